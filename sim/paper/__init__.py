"""Reproductions of the D3PG paper's figures and the paper-comparison report (``python -m sim paper``)."""
