"""The ceiling: a trivial Flask endpoint served by the same gunicorn settings as the real one."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/webhooks/deal-won")
def accept():
    """Read the body and answer, doing nothing else."""
    request.get_data()
    return jsonify(status="ok"), 202
