"""Training side of edgebp (torch allowed here): model zoo, data pipeline, train and evaluate."""
