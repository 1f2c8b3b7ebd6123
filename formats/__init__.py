"""File formats: vector tables (Parquet / Arrow), their ``vecx`` metadata, and codec state files."""
