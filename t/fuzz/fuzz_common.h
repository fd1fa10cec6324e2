
/*
 * nginx-resilience fuzzing: what every target shares.  A target is a
 * libFuzzer entry point (LLVMFuzzerTestOneInput) over one of the modules'
 * parsers of input that comes from the outside (request headers,
 * discovery documents, Consul answers, health check answers), linked
 * with the objects of a whole nginx build (NGINX_SRC) and the modules'
 * sources: see t/fuzz/fuzz.sh.
 */


#ifndef _NGX_FUZZ_COMMON_H_INCLUDED_
#define _NGX_FUZZ_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>


/* the process-wide state nginx's pools, logs and times need */

static ngx_log_t        ngx_fuzz_log;
static ngx_open_file_t  ngx_fuzz_log_file;
static ngx_cycle_t      ngx_fuzz_cycle;


static void
ngx_fuzz_init(void)
{
    ngx_pagesize = getpagesize();

    for (ngx_pagesize_shift = 0; (1 << ngx_pagesize_shift) < ngx_pagesize;
         ngx_pagesize_shift++)
    {
        /* void */
    }

    ngx_cacheline_size = NGX_CPU_CACHE_LINE;

    ngx_time_init();

    ngx_fuzz_log_file.fd = ngx_open_file("/dev/null", NGX_FILE_WRONLY,
                                         NGX_FILE_OPEN, 0);
    ngx_fuzz_log_file.name.len = sizeof("/dev/null") - 1;
    ngx_fuzz_log_file.name.data = (u_char *) "/dev/null";
    ngx_fuzz_log.file = &ngx_fuzz_log_file;
    ngx_fuzz_log.log_level = NGX_LOG_DEBUG;

    /* for what logs through ngx_cycle->log (PCRE2's allocations) */
    ngx_fuzz_cycle.log = &ngx_fuzz_log;
    ngx_cycle = &ngx_fuzz_cycle;
}


/* an invariant that does not hold: the fuzzer records the input */

#define ngx_fuzz_assert(cond, what)                                          \
    if (!(cond)) {                                                           \
        fprintf(stderr, "fuzz: %s does not hold: %s\n", #cond, what);        \
        abort();                                                             \
    }


#endif /* _NGX_FUZZ_COMMON_H_INCLUDED_ */
