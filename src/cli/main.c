/* rotbench: entry point and subcommand dispatch. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core/rb_blas.h"
#include "core/rb_file.h"
#include "core/rb_signal.h"

static const char *const usage_text =
    "usage: rotbench COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  ppl MODEL --text FILE [--tokenizer PATH] [--seqlen N] [--protocol gptq|llamacpp]\n"
    "            [--max-windows K] [--nll-out FILE] [--text-range a:b] [--doc-sep STR]\n"
    "            [--quant PRESET [--w-algo rtn|gptq] [--act-order] [--calib FILE --calib-range a:b\n"
    "             --calib-samples N --calib-seqlen L] [--stats FILE.tsv]]\n"
    "            [--rotation METHOD [--rot-opt NAME=VALUE,...] | --load-rotation FILE] [--seed S]\n"
    "            [--r3 on|off] [--r4 on|off] [--calib-batch N]\n"
    "            [--emb-center on|off] [--cross-head on|off] [--save-rotation FILE]\n"
    "            [--o-proj auto|head|row]                (o_proj input: per head, or per row after cross-head)\n"
    "            (--doc-sep STR: --text and --calib are documents split at STR, each with its own BOS)\n"
    "                                                    perplexity; one JSON line on stdout\n"
    "  tasks MODEL --task NAME=FILE [--task NAME=FILE ...] [--limit N] [--bos none|tokenizer-default]\n"
    "            [--max-length N] [--labels FILE] [--docs-out FILE.tsv] [--separate]\n"
    "            (+ the quantization/rotation/calibration options of ppl; --text optional)\n"
    "                                                    zero-shot accuracy as lm-eval; one JSON line\n"
    "  grad MODEL --text FILE --seqlen L --windows N --out grads.h5 [--text-range a:b]\n"
    "            [--quant PRESET] [--rotation METHOD [--rot-opt ...] | --load-rotation FILE]\n"
    "            [--clipped-ste] [--no-checkpoint]    (+ the rotation/calibration options of ppl)\n"
    "                                                    training loss and dL/dR1, dL/dR2 (HDF5)\n"
    "  export-model MODEL --format hf|gptq|gguf --out DIR [--dtype F32|F16|BF16] [--allow-online-dropped]\n"
    "            [--force] [--gptq-scales F32|F16] [--max-shard-mb N] [--text FILE]\n"
    "            (+ the quantization/rotation/calibration options of ppl)\n"
    "                                                    the run's model for other engines (docs/export.md)\n"
    "  methods [METHOD]                                  rotation methods, status and options\n"
    "  run CONFIG.yaml [key=value|+key=value|~key ...] [--out DIR] [--resume] [--force] [--cfg]\n"
    "            [--configs DIR]                         one experiment run (results/<name>/<name>-<id>/)\n"
    "  sweep CONFIG.yaml [overrides] [-m key=a,b ...] [--dry-run] [--shard i/n] [--index k]\n"
    "            [--out DIR] [--resume] [--force]        manifest.tsv, then the selected rows\n"
    "  status DIR | index DIR | export DIR --csv         sweep state, index.h5, CSV summary\n"
    "  plot DIR [--quant PRESET]                         gnuplot figures (SVG + PNG) in DIR/figures\n"
    "                                                    (--quant: that preset's runs, in DIR/figures-PRESET)\n"
    "  table DIR [--format md|latex|csv]                 methods x settings perplexity table\n"
    "  tokenize --tokenizer PATH --file FILE [--bos] [--doc-sep STR] [--format json|lines|count]\n"
    "  logits MODEL --ids FILE --out FILE                int32 LE ids in, float32 [T][vocab] out\n"
    "  inspect MODEL                                     config, tensors, Hadamard factorizations (JSON)\n"
    "  make-model OUT --preset NAME [--seed S] [--dtype F32|F16|BF16] [--shards N]\n"
    "            [--layers N --dim D --hidden H --heads H --kv-heads K --vocab V]\n"
    "  bench forward|backward [--dim D --hidden H --heads H --kv-heads K --T N --reps R]\n"
    "  bench respinquant-step [--dim D ... --T N --layers L --target-layers N --rank R]\n"
    "                                                    one ReSpinQuant training step by parts (JSON)\n"
    "  version\n"
    "\n"
    "MODEL is a Hugging Face directory (config.json + safetensors, plain or GPTQ-packed), a .gguf file\n"
    "(F32/F16/BF16) or a llama2.c .bin file.\n"
    "Exit codes: 0 ok, 1 failed, 2 usage or input error, 3 interrupted.\n";

int main(int argc, char **argv) {
    /* HDF5 closes every file still open from an atexit handler; after a write error (disk full) a file
     * whose close failed crashes that handler (HDF5 1.10: SIGSEGV in H5F__close_cb), turning a clean
     * error exit into a segfault (issue 16). rotbench closes its files itself, so the handler is not
     * needed: must run before any other HDF5 call. */
    H5dont_atexit();
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? RB_EXIT_USAGE : RB_EXIT_OK;
    }
    const char *cmd = argv[1];
    rb_signal_install(); /* long commands poll the flag, flush, and exit 3 */
    static const char *const computes[] = {"ppl", "tasks", "grad", "export-model", "logits", "make-model",
                                            "bench", "run", "sweep", NULL};
    for (const char *const *c = computes; *c; c++)
        if (!strcmp(cmd, *c)) {
            rb_error e = {0};
            if (rb_blas_warmup(&e)) {
                /* _exit: OpenBLAS's exit handler joins a worker thread that may be spinning on the
                 * same allocation, which would hang the exit */
                fprintf(stderr, "rotbench: %s\n", e.msg);
                fflush(stdout);
                fflush(stderr);
                _exit(rb_cli_exit_code(e.code));
            }
        }
    int sub_argc = argc - 2;
    char **sub_argv = argv + 2;
    if (!strcmp(cmd, "ppl")) return rb_cmd_ppl(sub_argc, sub_argv);
    if (!strcmp(cmd, "tasks")) return rb_cmd_tasks(sub_argc, sub_argv);
    if (!strcmp(cmd, "grad")) return rb_cmd_grad(sub_argc, sub_argv);
    if (!strcmp(cmd, "export-model")) return rb_cmd_export_model(sub_argc, sub_argv);
    if (!strcmp(cmd, "tokenize")) return rb_cmd_tokenize(sub_argc, sub_argv);
    if (!strcmp(cmd, "logits")) return rb_cmd_logits(sub_argc, sub_argv);
    if (!strcmp(cmd, "inspect")) return rb_cmd_inspect(sub_argc, sub_argv);
    if (!strcmp(cmd, "make-model")) return rb_cmd_make_model(sub_argc, sub_argv);
    if (!strcmp(cmd, "bench")) return rb_cmd_bench(sub_argc, sub_argv);
    if (!strcmp(cmd, "methods")) return rb_cmd_methods(sub_argc, sub_argv);
    if (!strcmp(cmd, "run")) return rb_cmd_run(sub_argc, sub_argv);
    if (!strcmp(cmd, "sweep")) return rb_cmd_sweep(sub_argc, sub_argv);
    if (!strcmp(cmd, "status")) return rb_cmd_status(sub_argc, sub_argv);
    if (!strcmp(cmd, "index")) return rb_cmd_index(sub_argc, sub_argv);
    if (!strcmp(cmd, "export")) return rb_cmd_export(sub_argc, sub_argv);
    if (!strcmp(cmd, "plot")) return rb_cmd_plot(sub_argc, sub_argv);
    if (!strcmp(cmd, "table")) return rb_cmd_table(sub_argc, sub_argv);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("{\"rotbench\": \"%s\", \"blas_core\": \"%s\", \"blas_threads\": %d}\n", RB_VERSION,
               rb_blas_corename(), rb_blas_threads());
        return RB_EXIT_OK;
    }
    fprintf(stderr, "rotbench: unknown command '%s'\n\n%s", cmd, usage_text);
    return RB_EXIT_USAGE;
}
