"""`dlkit adapter`: text classification with hand-written bottleneck adapters in a frozen RoBERTa/BERT."""
