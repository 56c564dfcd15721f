// A local OpenAI-compatible chat-completions server over llama.cpp, for shipsft's judge tests.
//
// node-llama-cpp 3.21.1 ships llama.cpp as prebuilt npm binaries (@node-llama-cpp/linux-x64) but no HTTP server, so
// this file speaks the OpenAI shape itself: POST /v1/chat/completions ({model, messages, temperature, max_tokens,
// response_format}), GET /v1/models, GET /health. The model's own chat template (read from the GGUF by
// node-llama-cpp's resolveChatWrapper) renders the messages; temperature 0 is greedy; a `response_format` of type
// json_schema is enforced with a llama.cpp grammar, as llama.cpp's own llama-server and vLLM do.
//
//     node server.mjs --node-modules DIR --model SmolLM2.gguf [--port 0] [--log requests.jsonl]
//
// DIR is the node_modules folder of the llama.cpp that `shipsft setup gguf` installs (the GGUF export's engine), so
// the tests use the one pinned llama.cpp the product uses.
//
// Prints `listening <port>` on stdout once the model is loaded; with --log, every request and its reply are
// appended as one JSON line (the tests read which prompts the judge was asked). Up to 4 requests are evaluated at
// once, batched by llama.cpp; more wait for a free sequence.
import fs from "node:fs";
import http from "node:http";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
    a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs, []));
if (!args.model || !args["node-modules"]) {
    console.error("usage: node server.mjs --node-modules DIR --model FILE.gguf [--port 0] [--log requests.jsonl]");
    process.exit(2);
}
const entry = pathToFileURL(join(args["node-modules"], "node-llama-cpp", "dist", "index.js")).href;
const {getLlama, LlamaChat, LlamaLogLevel} = await import(entry);
const llama = await getLlama({gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true,
    logLevel: LlamaLogLevel.error, progressLogs: false});
const model = await llama.loadModel({modelPath: args.model});
const SLOTS = 4;  // requests evaluated together, batched by llama.cpp (as llama-server's --parallel does)
const context = await model.createContext({contextSize: 2048, sequences: SLOTS, threads: 2});
const name = args.model.split("/").pop();

const ROLES = {system: "system", user: "user", assistant: "model"};

function history(messages) {
    return messages.map((m, i) => {
        const text = typeof m.content === "string" ? m.content : (m.content ?? []).map(p => p.text ?? "").join("");
        const type = ROLES[m.role];
        if (type === undefined) throw new Error(`messages[${i}].role ${JSON.stringify(m.role)} is not supported`);
        return type === "model" ? {type, response: [text]} : {type, text};
    });
}

const grammars = new Map();  // compiled once per schema: building a llama.cpp grammar costs seconds

async function grammarFor(format) {
    if (format?.type !== "json_schema" && format?.type !== "json_object") return undefined;
    const key = JSON.stringify(format);
    if (!grammars.has(key)) {
        grammars.set(key, format.type === "json_schema" ? await llama.createGrammarForJsonSchema(
            format.json_schema.schema) : await llama.getGrammarFor("json"));
    }
    return grammars.get(key);
}

async function complete(body) {
    const chat = new LlamaChat({contextSequence: context.getSequence()});
    try {
        const before = chat.sequence.tokenMeter.getState();
        const res = await chat.generateResponse(history(body.messages ?? []), {
            temperature: body.temperature ?? 0, maxTokens: body.max_tokens ?? 256,
            grammar: await grammarFor(body.response_format)});
        const used = chat.sequence.tokenMeter.diff(before);
        return {
            id: `chatcmpl-${Date.now()}`, object: "chat.completion", created: Math.floor(Date.now() / 1000),
            model: body.model ?? name,
            choices: [{index: 0, message: {role: "assistant", content: res.response},
                finish_reason: res.metadata.stopReason === "maxTokens" ? "length" : "stop"}],
            usage: {prompt_tokens: used.usedInputTokens, completion_tokens: used.usedOutputTokens,
                total_tokens: used.usedInputTokens + used.usedOutputTokens},
        };
    } finally {
        chat.dispose({disposeSequence: true});
    }
}

function send(res, status, obj) {
    const text = JSON.stringify(obj);
    res.writeHead(status, {"Content-Type": "application/json", "Content-Length": Buffer.byteLength(text)});
    res.end(text);
}

let active = 0;
const waiting = [];  // requests beyond SLOTS wait for a free sequence

async function inSlot(fn) {
    if (active >= SLOTS) await new Promise(resolve => waiting.push(resolve));
    active++;
    try {
        return await fn();
    } finally {
        active--;
        waiting.shift()?.();
    }
}

const server = http.createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/health" || req.url === "/v1/models")) {
        return send(res, 200, req.url === "/health" ? {status: "ok"} :
            {object: "list", data: [{id: name, object: "model", owned_by: "local"}]});
    }
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
        return send(res, 404, {error: {message: `no route ${req.method} ${req.url}`, type: "not_found"}});
    }
    let raw = "";
    req.on("data", chunk => { raw += chunk; });
    req.on("end", () => {
        inSlot(async () => {
            let body;
            try {
                body = JSON.parse(raw);
                const reply = await complete(body);
                if (args.log) fs.appendFileSync(args.log, JSON.stringify({request: body, reply}) + "\n");
                send(res, 200, reply);
            } catch (e) {
                send(res, 400, {error: {message: String(e?.message ?? e), type: "invalid_request_error"}});
            }
        });
    });
});
server.listen(Number(args.port ?? 0), "127.0.0.1", () => console.log(`listening ${server.address().port}`));
