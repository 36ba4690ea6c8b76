"""A real gRPC server and client (grpcio, from the test venv) for tests/api/grpc.rs.

No protoc: the service is registered with grpcio's generic handlers and its messages are raw
bytes (identity serializers), so nothing is generated. Methods of `demo.Echo`:

  Unary(bytes) -> JSON {"user_id", "username", "message"}      the identity the call carried
  Stream(bytes) -> 3 x JSON {"user_id", "index"}               server streaming
  Calls(bytes) -> JSON {"calls": N}                            calls to Unary and Stream so far

Usage:
  grpc_peer.py serve [--tls CERT KEY]     prints "PORT n" when listening, serves until killed
  grpc_peer.py call TARGET METHOD [--token T] [--ca FILE --authority NAME] [--service NAME]
                                          one call; prints JSON {"code", "details", "responses",
                                          "initial", "trailing"}
  grpc_peer.py load TARGET SECONDS CONCURRENCY [--token T]
                                          Unary calls for SECONDS on CONCURRENCY threads; prints
                                          JSON {"calls", "seconds", "errors"}
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "demo.Echo"
calls = 0
calls_lock = threading.Lock()


def identity(context):
    metadata = dict(context.invocation_metadata())
    return metadata.get("x-auth-user-id"), metadata.get("x-auth-username")


def count():
    global calls
    with calls_lock:
        calls += 1


def unary(request, context):
    count()
    user_id, username = identity(context)
    return json.dumps(
        {"user_id": user_id, "username": username, "message": request.decode()}
    ).encode()


def stream(request, context):
    count()
    user_id, _ = identity(context)
    for index in range(3):
        yield json.dumps({"user_id": user_id, "index": index}).encode()


def calls_so_far(request, context):
    with calls_lock:
        return json.dumps({"calls": calls}).encode()


def serve(args):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Calls": grpc.unary_unary_rpc_method_handler(calls_so_far),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if args[:1] == ["--tls"]:
        cert = open(args[1], "rb").read()
        key = open(args[2], "rb").read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()


def option(args, name):
    return args[args.index(name) + 1] if name in args else None


def channel(target, args):
    ca = option(args, "--ca")
    if ca is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
    authority = option(args, "--authority")
    options = [("grpc.ssl_target_name_override", authority)] if authority else []
    return grpc.secure_channel(target, credentials, options=options)


def call(target, method, args):
    token = option(args, "--token")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    result = {"code": "OK", "details": None, "responses": [], "initial": {}, "trailing": {}}
    with channel(target, args) as ch:
        path = f"/{option(args, '--service') or SERVICE}/{method}"
        try:
            if method == "Stream":
                it = ch.unary_stream(path)(b"hello", metadata=metadata, timeout=10)
                result["responses"] = [json.loads(r) for r in it]
                result["initial"] = dict(it.initial_metadata())
                result["trailing"] = dict(it.trailing_metadata())
            else:
                response, c = ch.unary_unary(path).with_call(
                    b"hello", metadata=metadata, timeout=10
                )
                result["responses"] = [json.loads(response)]
                result["initial"] = dict(c.initial_metadata())
                result["trailing"] = dict(c.trailing_metadata())
        except grpc.RpcError as e:
            result["code"] = e.code().name
            result["details"] = e.details()
            result["initial"] = dict(e.initial_metadata() or ())
            result["trailing"] = dict(e.trailing_metadata() or ())
    print(json.dumps(result, default=str))


def load(target, seconds, concurrency, args):
    token = option(args, "--token")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    done = [0] * concurrency
    errors = [0] * concurrency
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def worker(i):
        with channel(target, args) as ch:
            stub = ch.unary_unary(f"/{SERVICE}/Unary")
            while time.monotonic() < deadline:
                try:
                    stub(b"x", metadata=metadata, timeout=10)
                    done[i] += 1
                except grpc.RpcError:
                    errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(json.dumps({"calls": sum(done), "seconds": elapsed, "errors": sum(errors)}))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        serve(args)
    elif command == "call":
        call(args[0], args[1], args[2:])
    elif command == "load":
        load(args[0], float(args[1]), int(args[2]), args[3:])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
