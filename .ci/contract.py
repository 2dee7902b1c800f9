#!/usr/bin/env python3
"""The contract check: schemathesis against a live flashdrop, signed in as a
buyer, a seller and a platform admin, with every check on (`[checks] enabled`
in schemathesis.toml, so an operation there can turn one off).

Starts the release binary on a free port with a data directory of its own,
makes the three identities (and a product with stock, so routes have real
things to find), then runs schemathesis once per identity. Prints how many
cases each run generated and exits non-zero on any failure or server error.

Usage: .ci/contract.py [--binary target/release/flashdrop] [--max-examples N]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SECRET = "contract-check-secret-of-more-than-32-bytes"
PASSWORD = "contract-Check-password-7"
ADMIN = "root@contract.example"


def call(base, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if body is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def sign_up(base, email):
    status, _ = call(base, "POST", "/v1/auth/register", {"email": email, "password": PASSWORD})
    assert status == 202, (email, status)
    return login(base, email)


def login(base, email):
    status, body = call(base, "POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, (email, status, body)
    return body["access_token"]


def start(binary, data_dir):
    env = dict(os.environ)
    env.update(
        {
            "FLASHDROP__AUTH__JWT_SECRET": SECRET,
            "FLASHDROP__AUTH__BOOTSTRAP_ADMIN_EMAIL": ADMIN,
            "FLASHDROP__AUTH__BOOTSTRAP_ADMIN_PASSWORD": PASSWORD,
            # The identities' tokens must outlive the run.
            "FLASHDROP__AUTH__ACCESS_TTL_S": "86400",
            "FLASHDROP__LOG__LEVEL": "warn",
        }
    )
    log = open(os.path.join(data_dir, "server.log"), "w")
    server = subprocess.Popen(
        [binary, "serve", "--port", "0", "--data-dir", os.path.join(data_dir, "data")],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )
    line = server.stdout.readline()
    match = re.match(r"flashdrop listening on (http://\S+)", line)
    if not match:
        server.kill()
        sys.exit(f"contract: flashdrop did not start: {line!r}; see {log.name}")
    return server, match.group(1)


def identities(base):
    admin = login(base, ADMIN)
    buyer = sign_up(base, "buyer@contract.example")
    seller = sign_up(base, "seller@contract.example")
    status, body = call(base, "POST", "/v1/tenants", {"name": "Contract store"}, seller)
    assert status == 201, (status, body)
    seller = body["tokens"]["access_token"]
    price = {"amount": 1999, "currency": "USD"}
    status, body = call(
        base,
        "POST",
        "/v1/products",
        {"title": "Contract tee", "skus": [{"sku": "CONTRACT-1", "price": price}]},
        seller,
    )
    assert status == 201, (status, body)
    status, _ = call(base, "PUT", "/v1/skus/CONTRACT-1/stock", {"warehouses": {"main": 1000000}}, seller)
    assert status == 200, status
    return {"buyer": buyer, "seller": seller, "platform admin": admin}


def run(base, name, token, args):
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml"),
        "run",
        base + "/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--exclude-path",
        "/v1/auth/logout",
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--no-color",
    ] + args.extra.split()
    print(f"contract: schemathesis as the {name}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    print(output, flush=True)
    generated = re.search(r"(\d+) generated", output)
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    failures = re.search(r"(\d+) failures?\b", summary)
    errors = re.search(r"(\d+) errors?\b", summary)
    return {
        "name": name,
        "code": done.returncode,
        "generated": int(generated.group(1)) if generated else 0,
        "failures": int(failures.group(1)) if failures else 0,
        "errors": int(errors.group(1)) if errors else 0,
        "server_errors": len(re.findall(r"Server error", output)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/flashdrop")
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--seed", type=int, default=2026)
    # One worker: CPython 3.11's ast module keeps its recursion depth in
    # state two threads share, so two workers that describe hypothesis
    # lambdas at once fail inside the tool ("AST constructor recursion depth
    # mismatch"); it failed a CI run again after one retry.
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--only", help="run one identity: buyer, seller or admin")
    parser.add_argument("--extra", default="", help="more schemathesis arguments (space-separated)")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flashdrop-contract-") as data_dir:
        server, base = start(args.binary, data_dir)
        try:
            results = []
            for name, token in identities(base).items():
                if args.only and not name.endswith(args.only):
                    continue
                result = run(base, name, token, args)
                if result["errors"] and not result["failures"] and not result["server_errors"]:
                    # An error is schemathesis failing inside itself, not an
                    # answer off the contract; seen once: CPython 3.11's
                    # "AST constructor recursion depth mismatch" when two
                    # workers parse lambdas at once. One more try.
                    print(f"contract: schemathesis erred internally as the {name}; running it again", flush=True)
                    result = run(base, name, token, args)
                results.append(result)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        total = sum(r["generated"] for r in results)
        bad = [r for r in results if r["code"] != 0 or r["failures"] or r["errors"] or r["server_errors"]]
        for r in results:
            print(
                f"contract: as the {r['name']}: {r['generated']} cases generated, "
                f"{r['failures']} failures, {r['errors']} errors, {r['server_errors']} server errors "
                f"(exit {r['code']})"
            )
        verdict = "FAILED" if bad else "passed"
        print(
            f"contract: {verdict}: {total} cases generated over {len(results)} identities "
            f"in {time.monotonic() - started:.0f} s"
        )
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
