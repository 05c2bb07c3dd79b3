/* rb_signal: SIGINT/SIGTERM turn into a flag that long loops poll, so a run can finish or abandon
 * its current unit, flush its results and exit 3 (only main exits). */
#ifndef RB_SIGNAL_H
#define RB_SIGNAL_H

/* Installs handlers for SIGINT and SIGTERM that set the flag (a second signal restores the
 * default action, so a stuck run can still be killed). */
void rb_signal_install(void);
/* Non-zero once a signal arrived. */
int rb_interrupted(void);
/* Sets / clears the flag (tests). */
void rb_interrupt_raise(void);
void rb_interrupt_clear(void);

#endif
