"""`dlkit qa`: extractive question answering (span heads over BERT-family encoders, SQuAD v1/v2 data)."""
