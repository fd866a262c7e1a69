"""Writers: WebDataset shards, the parquet index and the rejects table."""
