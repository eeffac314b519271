// GPT-2 token ids of a UTF-8 text file from the npm package gpt-3-encoder (openai/gpt-2's
// encoder.py in JavaScript), written as little-endian int32: the reference
// tests/data/tokenizer_test.cpp checks retort's GPT-2 tokenizer against.
//   node tests/data/gpt2_reference.js <package folder> <text file> <ids file>
'use strict';
const fs = require('fs');
const path = require('path');

const [packageDir, textFile, idsFile] = process.argv.slice(2);
if (!idsFile) {
  console.error('usage: node gpt2_reference.js <gpt-3-encoder folder> <text file> <ids file>');
  process.exit(2);
}
const { encode } = require(path.resolve(packageDir));
const text = fs.readFileSync(textFile, 'utf8');

// The package's encode() concatenates one array per word, quadratic in the tokens of a
// call, so the text goes in pieces. A piece ends after a '\n' that has a non-space on both
// sides: no word of GPT-2's pattern spans that cut (a word holding '\n' holds only spaces),
// and the '\n' is a word of its own either way (\s+ at the end of a piece, \s+ again when a
// non-space follows it), so the pieces' ids concatenate to the whole text's.
const isSpace = (c) => /\s/u.test(c);
const kPiece = 1024;
const ids = [];
let start = 0;
for (let p = start + kPiece; p < text.length; p++) {
  if (text[p - 1] === '\n' && !isSpace(text[p - 2]) && !isSpace(text[p])) {
    ids.push(...encode(text.slice(start, p)));
    start = p;
    p = start + kPiece - 1;
  }
}
ids.push(...encode(text.slice(start)));

const bad = ids.findIndex((id) => !Number.isInteger(id));
if (bad >= 0) {
  console.error(`gpt-3-encoder gave no id for token ${bad} (${ids[bad]})`);
  process.exit(1);
}
fs.writeFileSync(idsFile, Buffer.from(Int32Array.from(ids).buffer));
