{
  "format": "karyoscreen-bundle-signature-v1",
  "key_id": "58c657399a859980",
  "public_key": "58c657399a859980c8dfe9c7da481771812d05e0b2d8eb0c2afc6048acacfecd",
  "onnx_sha256": "88ebc9d1e755955f08fc165b2e22fde5875d3351e9e9fcd4037c9ba09a142b58",
  "card_sha256": "e3171cba6e982fad7c573bf52f8ad0ebc5058b14b610d9dbdfa43571c0c7cddb",
  "signature": "fd57c7ecc4bd54d4bc4d6801b16ae897a36ed09f99560296e7c0eddaddb9a9a32edc2598f31c9ed638fb4e91dffb47b157fa12701c686ddfb675db6ab0a5de0a"
}
