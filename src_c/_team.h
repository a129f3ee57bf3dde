/* The thread team's meeting point (_team.pxi): an OpenMP barrier called from inside the
 * parallel region that train_epoch opens (an orphaned barrier binds to that region), and
 * the team's size and this thread's number. Without OpenMP the team is one thread. */
#ifndef FASTBP_TEAM_H
#define FASTBP_TEAM_H
#ifdef _OPENMP
#include <omp.h>
static void fastbp_barrier(void) {
#pragma omp barrier
}
static int fastbp_team_size(void) { return omp_get_num_threads(); }
static int fastbp_thread_number(void) { return omp_get_thread_num(); }
#else
static void fastbp_barrier(void) {}
static int fastbp_team_size(void) { return 1; }
static int fastbp_thread_number(void) { return 0; }
#endif
#endif
