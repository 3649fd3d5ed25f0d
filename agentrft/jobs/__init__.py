"""Fine-tuning jobs as a service: a SQLite store, a state machine, and a worker process."""
