{
  "format": "karyoscreen-bundle-signature-v1",
  "key_id": "1c038af00a54b479",
  "public_key": "1c038af00a54b479f04a0391ef95ce3945ef00078e5cd985bc575d3578016b96",
  "onnx_sha256": "ff70f301fd9ef48c1ce4def32d7a1807f22d98050ea36d9489aac701fd3c376a",
  "card_sha256": "657f1f72a13c58d57c47828f1be8741ccd3722e3cd696ba7e9ba39124ebb9b01",
  "signature": "fc2f634e99e992feb909adebb7f471801d45f1ae772bd030de3a1e55971dc8b412e4bb496bab6bc409721c500be124eae0a812e794c2d0f67b89f112675bcc0c"
}
