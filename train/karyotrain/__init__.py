"""karyotrain: training, export and fixtures for the karyoscreen chromosome classifier."""
