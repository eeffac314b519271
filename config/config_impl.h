#pragma once
/// Template machinery behind config::Fields / Reader / describe (included by config.h;
/// not meant to be included on its own).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace retort::config {

namespace detail {

struct Value;

// Decoders: false with a message ("expected int, got 'abc' (string)") when the value
// does not fit. Defined in reader.cpp.
bool decode(const Value& v, bool& out, std::string& err);
bool decode(const Value& v, int& out, std::string& err);
bool decode(const Value& v, int64_t& out, std::string& err);
bool decode(const Value& v, uint64_t& out, std::string& err);
bool decode(const Value& v, float& out, std::string& err);
bool decode(const Value& v, double& out, std::string& err);
bool decode(const Value& v, std::string& out, std::string& err);
bool decode(const Value& v, YAML::Node& out, std::string& err);
bool is_null(const Value& v);
bool is_list(const Value& v);
size_t list_size(const Value& v);
const Value& list_item(const Value& v, size_t i);
std::string describe(const Value& v);

// Defaults as YAML text, for --help.
std::string render(bool v);
std::string render(int64_t v);
std::string render(uint64_t v);
std::string render(double v);
std::string render(const std::string& v);
std::string render(const YAML::Node& v);
inline std::string render(int v) { return render(static_cast<int64_t>(v)); }
inline std::string render(float v) { return render(static_cast<double>(v)); }

template <class T, class = void>
struct HasCodec : std::false_type {};
template <class T>
struct HasCodec<T, std::void_t<decltype(Codec<T>::decode(std::declval<const YAML::Node&>()))>> : std::true_type {};

template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string render(E v) {
  return render(enum_name(v));
}

template <class T, std::enable_if_t<HasCodec<T>::value, int> = 0>
std::string render(const T& v) {
  return render(Codec<T>::encode(v));
}

template <class V>
std::string render(const std::optional<V>& v) {
  return v ? render(*v) : std::string("null");
}
template <class V>
std::string render(const std::vector<V>& v) {
  return "[" + retort::join(v, [](const V& x) { return render(x); }) + "]";
}

/// What a member type is, for messages, --help and which constraints apply.
template <class V, class = void>
struct TypeTraits;
template <>
struct TypeTraits<bool> {
  static std::string name() { return "bool"; }
  static constexpr bool numeric = false, scalar = true;
};
template <class V>
struct TypeTraits<V, std::enable_if_t<std::is_same_v<V, int> || std::is_same_v<V, int64_t> ||
                                      std::is_same_v<V, uint64_t>>> {
  static std::string name() { return "int"; }
  static constexpr bool numeric = true, scalar = true;
};
template <class V>
struct TypeTraits<V, std::enable_if_t<std::is_same_v<V, float> || std::is_same_v<V, double>>> {
  static std::string name() { return "float"; }
  static constexpr bool numeric = true, scalar = true;
};
template <>
struct TypeTraits<std::string> {
  static std::string name() { return "string"; }
  static constexpr bool numeric = false, scalar = true;
};
template <>
struct TypeTraits<YAML::Node> {
  static std::string name() { return "any"; }
  static constexpr bool numeric = false, scalar = false;
};
template <class E>
struct TypeTraits<E, std::enable_if_t<std::is_enum_v<E>>> {
  static std::string name() { return "string"; }
  static constexpr bool numeric = false, scalar = true;
};
template <class T>
struct TypeTraits<T, std::enable_if_t<HasCodec<T>::value>> {
  static std::string name() { return Codec<T>::type_name(); }
  static constexpr bool numeric = false, scalar = true;
};
template <class V>
struct TypeTraits<std::optional<V>> {
  static_assert(TypeTraits<V>::scalar, "config: std::optional<T> needs a scalar T");
  static std::string name() { return "optional[" + TypeTraits<V>::name() + "]"; }
  static constexpr bool numeric = TypeTraits<V>::numeric, scalar = true;
};
template <class V>
struct TypeTraits<std::vector<V>> {
  static_assert(TypeTraits<V>::scalar, "config: std::vector<T> needs a scalar T");
  static std::string name() { return "list[" + TypeTraits<V>::name() + "]"; }
  static constexpr bool numeric = TypeTraits<V>::numeric, scalar = false;
};

template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
bool decode(const Value& v, E& out, std::string& err) {
  std::string name;
  if (!decode(v, name, err)) return false;
  for (const auto& [n, value] : EnumNames<E>::list())
    if (n == name) {
      out = value;
      return true;
    }
  // Not one of the names: left as it is; the field's one_of constraint names the choices.
  return true;
}

template <class T, std::enable_if_t<HasCodec<T>::value, int> = 0>
bool decode(const Value& v, T& out, std::string& err) {
  YAML::Node node;
  if (!decode(v, node, err)) return false;
  try {
    out = Codec<T>::decode(node);
  } catch (const ConfigError& e) {
    err = e.what();
    return false;
  }
  return true;
}

template <class E>
std::vector<std::string> enum_choices() {
  std::vector<std::string> names;
  for (const auto& entry : EnumNames<E>::list()) names.push_back(entry.first);
  return names;
}

template <class V>
bool decode(const Value& v, std::optional<V>& out, std::string& err) {
  if (is_null(v)) {
    out.reset();
    return true;
  }
  V inner{};
  if (!decode(v, inner, err)) return false;
  out = std::move(inner);
  return true;
}

template <class V>
bool decode(const Value& v, std::vector<V>& out, std::string& err) {
  if (!is_list(v)) {
    err = "expected " + TypeTraits<std::vector<V>>::name() + ", got " + describe(v);
    return false;
  }
  std::vector<V> items(list_size(v));
  for (size_t i = 0; i < items.size(); ++i) {
    std::string e;
    if (!decode(list_item(v, i), items[i], e)) {
      err = "element [" + std::to_string(i) + "]: " + e;
      return false;
    }
  }
  out = std::move(items);
  return true;
}

KeyInfo key_info(const FieldBase& field, const std::string& path, const void* defaults);

}  // namespace detail

struct FieldBase::Impl {
  std::string key;
  std::string type;
  std::string help;
  bool numeric = false;
  bool free_form = false;  // YAML::Node: anything goes below it
  bool required = false;
  std::optional<double> min, max, greater, less;
  std::vector<std::string> choices;
  /// Decodes the value into the member of the object; false with a message.
  std::function<bool(void* object, const detail::Value& value, std::string& err)> assign;
  /// The member's value in a default-constructed object, as YAML.
  std::function<std::string(const void* object)> render;
};

template <class T>
template <class V>
FieldBase& Fields<T>::add(const std::string& key, V T::*member, const std::string& help) {
  return add<V>(key, std::function<V&(T&)>([member](T& object) -> V& { return object.*member; }), help);
}

template <class T>
template <class V>
FieldBase& Fields<T>::add(const std::string& key, std::function<V&(T&)> access, const std::string& help) {
  using Traits = detail::TypeTraits<V>;
  auto field = std::make_unique<FieldBase>();
  field->impl = std::make_shared<FieldBase::Impl>();
  FieldBase::Impl& impl = *field->impl;
  impl.key = key;
  impl.type = Traits::name();
  impl.help = help;
  impl.numeric = Traits::numeric;
  impl.free_form = std::is_same_v<V, YAML::Node>;
  if constexpr (std::is_enum_v<V>) impl.choices = detail::enum_choices<V>();
  impl.assign = [access](void* object, const detail::Value& value, std::string& err) {
    V decoded = access(*static_cast<T*>(object));
    if (!detail::decode(value, decoded, err)) return false;
    access(*static_cast<T*>(object)) = std::move(decoded);
    return true;
  };
  // The accessor needs a mutable object; rendering a default copies it first.
  impl.render = [access](const void* object) {
    T copy = *static_cast<const T*>(object);
    return detail::render(access(copy));
  };
  fields_.push_back(std::move(field));
  return *fields_.back();
}

template <class T>
template <class S>
void Fields<T>::add_section(const std::string& prefix, S T::*member) {
  Fields<S> inner;
  S::declare(inner);
  for (const auto& f : inner.fields()) {
    auto field = std::make_unique<FieldBase>();
    field->impl = std::make_shared<FieldBase::Impl>(*f->impl);
    if (!prefix.empty()) field->impl->key = prefix + "." + f->impl->key;
    field->impl->assign = [member, assign = f->impl->assign](void* object, const detail::Value& v, std::string& err) {
      return assign(&(static_cast<T*>(object)->*member), v, err);
    };
    field->impl->render = [member, render = f->impl->render](const void* object) {
      return render(&(static_cast<const T*>(object)->*member));
    };
    fields_.push_back(std::move(field));
  }
}

template <class T>
YAML::Node encode_options(const T& options) {
  Fields<T> fields;
  T::declare(fields);
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& f : fields.fields()) out[f->impl->key] = YAML::Load(f->impl->render(&options));
  return out;
}

template <class T>
bool is_default(const T& options) {
  Fields<T> fields;
  T::declare(fields);
  const T defaults{};
  for (const auto& f : fields.fields())
    if (f->impl->render(&options) != f->impl->render(&defaults)) return false;
  return true;
}

template <class E>
E enum_value(const std::string& name, const std::string& key) {
  for (const auto& [n, value] : EnumNames<E>::list())
    if (n == name) return value;
  throw ConfigError(key + ": expected one of " + retort::join(detail::enum_choices<E>()) + ", got '" + name + "'");
}

template <class E>
std::string enum_name(E value) {
  for (const auto& [n, v] : EnumNames<E>::list())
    if (v == value) return n;
  return "?";
}

template <class T>
T Reader::section(const std::string& path) {
  Fields<T> fields;
  T::declare(fields);
  T object{};
  read(path, fields.fields(), &object);
  return object;
}

template <class T>
std::vector<KeyInfo> describe(const std::string& path) {
  Fields<T> fields;
  T::declare(fields);
  const T defaults{};
  std::vector<KeyInfo> out;
  for (const auto& field : fields.fields()) out.push_back(detail::key_info(*field, path, &defaults));
  return out;
}

}  // namespace retort::config
