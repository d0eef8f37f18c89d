# Request bodies for ir-per-request.sh: the bench agent body (~90 KB), a small
# non-streamed request and a small streamed one, written to the current dir.
import json
text = "Refactor the handler so that errors are mapped in one place; keep the public API. "
msgs=[{"role": "user" if i%2==0 else "assistant", "content": f"{i}: "+text*5} for i in range(200)]
tools=[{"type":"function","function":{"name":f"tool_{i}","description":"Read a file of the repository and return its text, or an error.","parameters":{"type":"object","properties":{"path":{"type":"string","description":"path relative to the root"},"max_bytes":{"type":"integer","minimum":1}},"required":["path"]}}} for i in range(20)]
open("big.json","w").write(json.dumps({"model":"bench-model","stream":False,"messages":msgs,"tools":tools},separators=(",",":")))
open("small.json","w").write(json.dumps({"model":"bench-model","stream":False,"messages":[{"role":"user","content":"hi"}]}))
# Asks for usage (goproxy asks anyway): the mock then sends "usage":null in
# every chunk, as OpenAI does.
open("sse.json","w").write(json.dumps({"model":"bench-model","stream":True,"stream_options":{"include_usage":True},"messages":[{"role":"user","content":"hi"}]}))
