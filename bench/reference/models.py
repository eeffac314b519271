"""PyTorch twins of retort's models: same architecture, same parameter and buffer names,
so `retort export` weights load with load_state_dict(strict=True), and benchmarks time
the same computation in both frameworks."""
import json
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


class Stage(nn.Module):
    pass


class Cnn(nn.Module):
    def __init__(self, channels=(32, 64), convs_per_stage=2, batch_norm=True, pool="flatten",
                 hidden=(512,), dropout=0.0, in_channels=1, image_size=28, num_classes=10):
        super().__init__()
        self.pool, self.dropout, self.nstages = pool, dropout, len(channels)
        self.convs_per_stage, self.batch_norm = convs_per_stage, batch_norm
        c_in, side = in_channels, image_size
        for s, c in enumerate(channels):
            stage = Stage()
            for j in range(convs_per_stage):
                stage.add_module(f"conv{j}", nn.Conv2d(c_in, c, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    stage.add_module(f"bn{j}", nn.BatchNorm2d(c))
                c_in = c
            self.add_module(f"stage{s}", stage)
            side //= 2
        features = c_in if pool == "avg" else c_in * side * side
        self.nfc = len(hidden)
        for i, h in enumerate(hidden):
            self.add_module(f"fc{i}", nn.Linear(features, h))
            features = h
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):
        hidden = []
        for s in range(self.nstages):
            stage = getattr(self, f"stage{s}")
            for j in range(self.convs_per_stage):
                x = getattr(stage, f"conv{j}")(x)
                if self.batch_norm:
                    x = getattr(stage, f"bn{j}")(x)
                x = F.relu(x)
            x = F.max_pool2d(x, 2)
            hidden.append(x)
        x = x.mean((2, 3)) if self.pool == "avg" else x.flatten(1)
        for i in range(self.nfc):
            x = F.relu(getattr(self, f"fc{i}")(x))
            if self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            hidden.append(x)
        return self.head(x), hidden


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def load_safetensors(path):
    """The safetensors layout read with the standard library (what
    safetensors.torch.load_file returns), for machines without the package."""
    dtypes = SAFETENSORS_DTYPES
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = bytearray(data[8 + n:])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(body[b:end], dtype=dtypes[e["dtype"]]) if end > b else torch.empty(0, dtype=dtypes[e["dtype"]])
        out[name] = t.reshape(e["shape"]).clone()
    return out


def save_safetensors(path, tensors):
    """The safetensors layout written with the standard library (what
    safetensors.torch.save_file writes, without metadata): tensors in name order."""
    names = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
