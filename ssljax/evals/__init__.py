"""Evaluation of frozen representations: kNN, linear probes and figures."""
