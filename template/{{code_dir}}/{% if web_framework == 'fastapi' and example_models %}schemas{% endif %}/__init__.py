"""What the API reads and returns, apart from the tables (models/)."""
