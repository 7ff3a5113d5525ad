"""One file per modality kind: its schema fields, how it is fitted, how Arrow becomes tensors."""
