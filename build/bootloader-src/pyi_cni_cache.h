/*
 * cni-python-suite: run in place from a persistent, root-only cache
 * (build/bootloader-cache.patch, docs/build.md "Run in place").
 */
#ifndef PYI_CNI_CACHE_H
#define PYI_CNI_CACHE_H

struct PYI_CONTEXT;

/* Entries under this prefix are extracted into the cache only: the
 * per-start fallback leaves them to build/multicall.py (LazyExtensions). */
#define PYI_CNI_LAZY_PREFIX "cni-lazy/"

/* Non-zero while the cache is being populated. */
extern int pyi_cni_cache_populating;

/* 0: pyi_ctx->application_home_dir is a complete, verified cache directory
 * (populated now if it was missing), its libraries are loaded, and Python
 * may run in this process.  -1: use the per-start temporary directory. */
int pyi_cni_cache_prepare(struct PYI_CONTEXT *pyi_ctx);

#endif
