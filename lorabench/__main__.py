from lorabench.cli import app

app(prog_name="lorabench")
