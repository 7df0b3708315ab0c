"""What the benchmark scripts share: result files, timing in rounds, data, models, references."""
