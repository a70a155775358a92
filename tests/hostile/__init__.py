"""The hostile-input campaign of issue 6: generated and curated hostile input on every surface."""
