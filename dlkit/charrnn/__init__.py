"""`dlkit charrnn`: character-level language models (RNN, GRU, LSTM, a from-scratch LSTM, a transformer)."""
