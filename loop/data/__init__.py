"""The Examples a run uses: read from a source (`sources`: GSM8K, MATH, a Hugging Face dataset or a user's file),
validated (`validation`), the roles seed/pool/dev/test cut and pool items linked to seeds (`load`, `linking`), the
contamination policy applied (`contamination`), and checked against the run (`checks`)."""
