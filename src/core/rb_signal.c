#include "rb_signal.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_flag;

static void on_signal(int sig) {
    g_flag = 1;
    signal(sig, SIG_DFL); /* the next one terminates */
}

void rb_signal_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int rb_interrupted(void) { return g_flag != 0; }
void rb_interrupt_raise(void) { g_flag = 1; }
void rb_interrupt_clear(void) { g_flag = 0; }
