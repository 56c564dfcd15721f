// llama.cpp (node-llama-cpp's prebuilt CPU binaries) on one GGUF: what a served request meets. Run by engine.py:
//   node engine.mjs <node_modules folder> < request.json > result.json
// request: {model, threads, context, eog_check: [ids], prompts: [{text, ids, reference, max_new}]}
// result:  {eog: {id: bool}, results: [{ids, generated, stopped, stop_token, forced, forced_eog}], info}
//   ids        llama.cpp's tokenization of the prompt text (special tokens parsed, nothing added)
//   generated  greedy tokens (temperature 0) from those ids, up to the first end-of-generation token or max_new
//   forced     teacher forcing on the reference prompt ids + reference continuation: llama.cpp's greedy choice after
//              the prompt and after each reference token (len(reference) + 1 choices); forced_eog: each choice
//              ends generation in llama.cpp
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const entry = pathToFileURL(join(process.argv[2], "node-llama-cpp", "dist", "index.js")).href;
const {getLlama, LlamaLogLevel} = await import(entry);

const t0 = Date.now();
const llama = await getLlama({gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true,
                              progressLogs: false, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: req.model});
const context = await model.createContext({contextSize: req.context, batchSize: req.context, sequences: 1,
                                           threads: req.threads});
const sequence = context.getSequence();
const greedy = {token: true, options: {temperature: 0}};
const loadMs = Date.now() - t0;

const results = [];
for (const p of req.prompts) {
    const ids = Array.from(model.tokenize(p.text, true));
    await sequence.clearHistory();
    const generated = [];
    let stopToken = null;
    if (p.max_new > 0) {
        for await (const token of sequence.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
            if (model.isEogToken(token)) {
                stopToken = token;
                break;
            }
            generated.push(token);
            if (generated.length >= p.max_new) break;
        }
    }
    await sequence.clearHistory();
    const input = p.ids.slice(0, -1).concat([[p.ids[p.ids.length - 1], {generateNext: greedy}]],
                                            p.reference.map((t) => [t, {generateNext: greedy}]));
    const out = await sequence.controlledEvaluate(input);
    const forced = [];
    for (let i = p.ids.length - 1; i < input.length; i++) forced.push(out[i]?.next?.token ?? null);
    const forcedEog = forced.map((t) => t !== null && model.isEogToken(t));
    results.push({ids, generated, stopped: stopToken !== null, stop_token: stopToken, forced, forced_eog: forcedEog});
}
const eog = Object.fromEntries(req.eog_check.map((id) => [id, model.isEogToken(id)]));
console.log(JSON.stringify({eog, results, info: {load_ms: loadMs, total_ms: Date.now() - t0,
                                                 build: llama.buildType, gpu: llama.gpu,
                                                 cpu_math_cores: llama.cpuMathCores}}));
await context.dispose();
await model.dispose();
await llama.dispose();
