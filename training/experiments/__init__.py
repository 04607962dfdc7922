"""The paper's experiments (`ig_llm experiment NAME`: cogent, 2d / so3, numbers), the NS-VQA-style
baseline and the tower's learning curve."""
