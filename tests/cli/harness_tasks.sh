#!/bin/bash
# Zero-shot tasks through the experiment harness (data.tasks): config errors with their position
# (exit 2), a bad task file failing the run before the rotation (file:line), a sweep scoring tiny task
# files on a generated model (/tasks in results.h5, the task tables after the perplexity table, the
# tasks_delta figure), the run id following the task files; then on stories260K with the shipped
# task files (skipped loudly without shared data): experiments/tasks-w4a4.yaml resolves, and a run
# interrupted during its task pass resumes to the numbers of an uninterrupted one.
source "$(dirname "$0")/tap.sh"
cd "$TMP"

"$RB" make-model "$TMP/m" --preset gqa --seed 2 >/dev/null
for i in $(seq 1 20); do cat "$RB_SOURCE_ROOT/README.md"; done > "$TMP/text.txt"
# tiny task files: llm-foundry multiple choice (COPA) and LM (LAMBADA) copies, PIQA's release with its labels
cat > copa.jsonl <<'EOF'
{"query": "The man turned on the faucet, therefore", "gold": 1, "choices": ["the toilet filled with water.", "water flowed from the spout."]}
{"query": "The girl found a bug in her cereal, therefore", "gold": 1, "choices": ["she poured milk in the bowl.", "she lost her appetite."]}
{"query": "The woman retired, therefore", "gold": 0, "choices": ["she received her pension.", "she paid off her mortgage."]}
{"query": "I wanted to conserve energy, therefore", "gold": 0, "choices": ["I swept the floor.", "I shut off the lights."]}
{"query": "The hamburger meat browned, because", "gold": 0, "choices": ["the cook froze it.", "the cook grilled it."]}
{"query": "I doubted the salesman's pitch, therefore", "gold": 1, "choices": ["I turned his offer down.", "he persuaded me to buy."]}
EOF
cat > lambada.jsonl <<'EOF'
{"context": "She opened the door and the cat ran out into the", "continuation": "garden"}
{"context": "He poured the coffee into his favourite", "continuation": "mug"}
{"context": "The children built a castle out of", "continuation": "sand"}
{"context": "After the long walk they were tired and went to", "continuation": "bed"}
EOF
cat > piqa.jsonl <<'EOF'
{"goal": "To keep bread fresh,", "sol1": "store it in a sealed bag.", "sol2": "store it in the oven while baking."}
{"goal": "To dry wet shoes,", "sol1": "fill them with ice.", "sol2": "stuff them with newspaper."}
{"goal": "To open a jar with a tight lid,", "sol1": "run the lid under hot water.", "sol2": "put the jar in the freezer."}
EOF
printf '0\n1\n0\n' > piqa-labels.lst
cat > exp.yaml <<YAML
name: tx
model: {path: "$TMP/m"}
data:
  calib: {corpus: "$TMP/text.txt", range: "0:0.5", samples: 4, seqlen: 64}
  eval:
    - {corpus: "$TMP/text.txt", name: txt, range: "0.5:1", seqlen: 64, max_windows: 2}
  tasks:
    - {name: copa, file: "$TMP/copa.jsonl"}
    - {name: lambada_openai, file: "$TMP/lambada.jsonl", limit: 3}
    - {name: piqa, file: "$TMP/piqa.jsonl"}
quant: {preset: W4A4KV4}
rotation: {method: hadamard, emb_center: false}
sweep:
  grid: {rotation.method: [identity, hadamard]}
YAML

# --- config errors: file:line:col: key.path: what, exit 2 ---
expect_fail "unknown task name with hint" 2 "cmdline:2:19: data\\.tasks\\[0\\]\\.name: expected one of piqa, .*got cpoa \\(did you mean 'copa'\\?\\)" \
  "$RB" run exp.yaml '~sweep' data.tasks.0.name=cpoa
sed 's/name: copa, file/name: copa, lables: x, file/' exp.yaml > bad1.yaml
expect_fail "unknown task key" 2 "bad1.yaml:8:20: data\\.tasks\\[0\\]\\.lables: unknown key \\(did you mean 'labels'\\?\\)" \
  "$RB" run bad1.yaml '~sweep'
expect_fail "labels only for piqa" 2 "cmdline:2:[0-9]+: data\\.tasks\\[0\\]\\.labels: only piqa takes a labels file, not copa" \
  "$RB" run exp.yaml '~sweep' "+data.tasks.0.labels=$TMP/piqa-labels.lst"
expect_fail "duplicate task" 2 "data\\.tasks\\[1\\]\\.name: duplicate task 'copa' \\(also data\\.tasks\\[0\\]\\)" \
  "$RB" run exp.yaml '~sweep' data.tasks.1.name=copa
expect_fail "bad task_bos" 2 "cmdline:2:[0-9]+: data\\.task_bos: expected one of none, tokenizer-default, got yes" \
  "$RB" run exp.yaml '~sweep' data.task_bos=yes
expect_fail "missing task file" 2 "nope\\.jsonl" "$RB" run exp.yaml '~sweep' "data.tasks.0.file=$TMP/nope.jsonl"
out=$("$RB" run exp.yaml '~sweep' --cfg 2>/dev/null)
printf '%s' "$out" | grep -q "^    - name: lambada_openai" && printf '%s' "$out" | grep -q "^      limit: 3" \
  && printf '%s' "$out" | grep -q "^  task_bos: none" && ok "--cfg shows the tasks and task_bos" || not_ok "--cfg tasks" "$out"

# --- a bad task file fails the run at once, naming file and line ---
head -n 1 copa.jsonl > bad.jsonl; echo '{"query": "q", "gold": 5, "choices": ["a", "b"]}' >> bad.jsonl
expect_fail "bad task file: file:line, exit 2" 2 "bad\\.jsonl:2:" "$RB" run exp.yaml '~sweep' "data.tasks.0.file=$TMP/bad.jsonl" --out "$TMP/bad"
log=$(cat "$TMP"/bad/tx-*/run.log 2>/dev/null)
if ! printf '%s' "$log" | grep -q "bad\.jsonl:2: gold 5 out of range"; then
  not_ok "task files are read before the rotation" "no run.log with the error under $TMP/bad: $(find "$TMP/bad")"
elif printf '%s' "$log" | grep -q "rotation hadamard"; then not_ok "task files are read before the rotation" "$log"
else ok "task files are read before the rotation"; fi

# --- the run id follows the task files ---
id1=$("$RB" sweep exp.yaml --dry-run 2>/dev/null | cut -f3 | tr '\n' ' ')
cp lambada.jsonl lambada.keep; echo '{"context": "One more", "continuation": "line"}' >> lambada.jsonl
id2=$("$RB" sweep exp.yaml --dry-run 2>/dev/null | cut -f3 | tr '\n' ' ')
cp piqa-labels.lst labels.keep; printf '1\n1\n0\n' > piqa-labels.lst
id3=$("$RB" sweep exp.yaml --dry-run 2>/dev/null | cut -f3 | tr '\n' ' ')
mv lambada.keep lambada.jsonl; mv labels.keep piqa-labels.lst
id4=$("$RB" sweep exp.yaml --dry-run 2>/dev/null | cut -f3 | tr '\n' ' ')
[ -n "$id1" ] && [ "$id1" != "$id2" ] && [ "$id2" != "$id3" ] && [ "$id1" = "$id4" ] \
  && ok "run ids change with a task file and PIQA's labels file" || not_ok "run id" "$id1" "$id2" "$id3" "$id4"

# --- a sweep with tasks: /tasks, tables, figure ---
"$RB" sweep exp.yaml --out "$TMP/s1" > s1.out 2> s1.err
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '"status": "done"' s1.out)" = 2 ] && ok "sweep with tasks runs both rows" \
  || not_ok "sweep" "exit $rc" "$(tail -n 5 s1.err)"
grep -q "task copa: acc .* (FP .*, delta .*McNemar p" s1.err && ok "run log: accuracy, FP, delta and McNemar per task" \
  || not_ok "task log" "$(grep 'task ' s1.err | tail -n 3)"
tab=$("$RB" table "$TMP/s1" --format md 2>&1)
printf '%s\n' "$tab" | grep -q "^| Method *| *W4A4KV4 RTN |" && ok "table: the perplexity pivot comes first, unchanged" \
  || not_ok "pivot" "$tab"
printf '%s\n' "$tab" | grep -Eq "^\| Setting +\| Method +\| +PIQA \| +LAMBADA \| +COPA \| +Avg \|$" \
  && ok "table: task columns PIQA, LAMBADA, COPA and Avg (task order, labels)" || not_ok "task columns" "$tab"
printf '%s\n' "$tab" | grep -Eq "^\| +\| FP32 +\| +[0-9]+\.[0-9]{2} \|" && ok "table: FP32 row in percent, 2 decimals" \
  || not_ok "FP row" "$tab"
rows=$(printf '%s\n' "$tab" | grep -E "^\| W4A4KV4 RTN \| (identity|hadamard) +\| +[0-9]+\.[0-9]{2} \|" | grep -oE "identity|hadamard" | tr '\n' ' ')
[ "$rows" = "identity hadamard " ] && ok "table: method rows in registry order" || not_ok "task rows" "$rows" "$tab"
printf '%s\n' "$tab" | grep -Eq "^\| W4A4KV4 RTN \| hadamard +\| +[-+][0-9]+\.[0-9]{2} \[[-+][0-9]+\.[0-9]{2}, [-+][0-9]+\.[0-9]{2}\]\*? \|" \
  && ok "table: paired delta with its interval" || not_ok "delta table" "$tab"
"$RB" table "$TMP/s1" --format latex 2>/dev/null | grep -c 'begin{tabular}' | grep -qx 3 \
  && ok "table --format latex: perplexity, accuracy and delta tables" || not_ok "latex tables"
if command -v gnuplot >/dev/null; then
  out=$("$RB" plot "$TMP/s1" 2>&1)
  [ -s "$TMP/s1/figures/tasks_delta.svg" ] && grep -q "yerrorbars" "$TMP/s1/figures/tasks_delta.gp" \
    && grep -q "'COPA'" "$TMP/s1/figures/tasks_delta.gp" && ok "plot: tasks_delta with error bars" || not_ok "tasks_delta" "$out"
else skip_test "tasks_delta figure" "gnuplot missing"; fi
# a sweep without tasks: the table is the perplexity pivot alone
"$RB" sweep exp.yaml '~data.tasks' --out "$TMP/s0" >/dev/null 2>&1
t0=$("$RB" table "$TMP/s0" --format md 2>&1)
[ "$(printf '%s\n' "$t0" | grep -c '^|')" = 5 ] && ! printf '%s' "$t0" | grep -q "Zero-shot" \
  && ok "runs without tasks: table output unchanged" || not_ok "no tasks table" "$t0"
[ -z "$(ls "$TMP"/s0/figures/tasks_delta.* 2>/dev/null)" ] && ok "runs without tasks: no tasks figure" || not_ok "tasks figure without tasks"

# --- stories260K with the shipped task files ---
if need_data stories260K/hf/model.safetensors && need_data tasks/piqa/valid.jsonl && need_data tasks/llm-foundry/copa.jsonl \
   && need_data tasks/hellaswag/hellaswag_val_full.txt && need_data tinystories/valid-llama2c-data00.txt \
   && need_data hadamard; then
  export RB_SHARED_DATA="$DATA" RB_HADAMARD_DIR="$DATA/hadamard"
  n=$("$RB" sweep "$RB_SOURCE_ROOT/experiments/tasks-w4a4.yaml" --configs "$RB_SOURCE_ROOT/configs" --dry-run 2>/dev/null | grep -c selected)
  [ "$n" = 3 ] && ok "experiments/tasks-w4a4.yaml: 3 runs (FP, hadamard, spinquant)" || not_ok "tasks-w4a4 dry run" "$n rows"
  # one small W4A4 hadamard run of it, interrupted during its task pass, then resumed
  small=(--configs "$RB_SOURCE_ROOT/configs" --index 1 data.eval.0.max_windows=4 data.calib.samples=8
         data.tasks.0.limit=40 data.tasks.1.limit=40 data.tasks.3.limit=40 data.tasks.5.limit=40
         data.tasks.6.limit=10 data.tasks.2.limit=20 data.tasks.4.limit=20 data.tasks.7.limit=20 data.tasks.8.limit=20)
  "$RB" sweep "$RB_SOURCE_ROOT/experiments/tasks-w4a4.yaml" "${small[@]}" --out "$TMP/r_ref" > ref.out 2> ref.err \
    && ok "stories260K: W4A4 hadamard with every shipped task" || not_ok "stories260K tasks run" "$(tail -n 5 ref.err)"
  "$RB" sweep "$RB_SOURCE_ROOT/experiments/tasks-w4a4.yaml" "${small[@]}" --out "$TMP/r" > int.out 2> int.err &
  pid=$!
  for i in $(seq 1 3000); do
    grep -q "tasks: bos" "$TMP"/r/tasks-w4a4-*/run.log 2>/dev/null && break
    sleep 0.02
  done
  kill -INT $pid 2>/dev/null; wait $pid; rc=$?
  if [ $rc -eq 0 ]; then  # a fast machine can finish the pass before the signal lands
    skip_test "SIGINT during the task pass" "the pass finished before SIGINT arrived"
  else
    [ $rc -eq 3 ] && ok "SIGINT during the task pass: exit 3" || not_ok "interrupt" "exit $rc" "$(tail -n 3 int.err)"
    "$RB" status "$TMP/r" 2>/dev/null | grep -q "interrupted" && ok "the run is marked interrupted" \
      || not_ok "interrupted status" "$("$RB" status "$TMP/r" 2>&1)"
    "$RB" sweep "$RB_SOURCE_ROOT/experiments/tasks-w4a4.yaml" "${small[@]}" --out "$TMP/r" --resume > res.out 2> res.err
    grep -q '"status": "done"' res.out && grep -q "eval.tinystories-valid: done before the resume, skipped" res.err \
      && grep -q "tasks: bos" res.err && ok "resume: perplexity unit skipped, tasks scored" || not_ok "resume" "$(tail -n 5 res.err)"
  fi
  a=$("$RB" table "$TMP/r_ref" 2>/dev/null); b=$("$RB" table "$TMP/r" 2>/dev/null)
  [ -n "$a" ] && [ "$a" = "$b" ] && printf '%s' "$a" | grep -q "HellaSwag" \
    && ok "resumed run = uninterrupted run (every table cell)" || not_ok "resume result" "ref: $a" "got: $b"
else
  skip_test "stories260K tasks" "shared data missing"
fi
done_testing
