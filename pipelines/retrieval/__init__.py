"""deepsets retrieve: top-k items per query from embed outputs, on FAISS."""
