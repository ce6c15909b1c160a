{
  "format": "karyoscreen-bundle-signature-v1",
  "key_id": "1c038af00a54b479",
  "public_key": "1c038af00a54b479f04a0391ef95ce3945ef00078e5cd985bc575d3578016b96",
  "onnx_sha256": "be1726544103bccb2f74198ffc4ed73f36d8758f1d560a9f0e96007c990e9087",
  "card_sha256": "d9282f4446c2680de5609f84214fadfd7287d3a9afe8d8c3fa88bca59d2d976e",
  "signature": "1bcab5149c2f0f2fe171a50c62286c5209b8dab9554546a72affab5a5fa3fa151952c041267ad28d153d89b8eb80b1b8d67cf113b25dbdfa858dafcb1c8c1e00"
}
