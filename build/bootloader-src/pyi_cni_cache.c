/*
 * cni-python-suite: run in place from a persistent, root-only cache.
 *
 * The onefile parent would create a temporary directory, extract the bundle
 * into it, fork a child to run Python and remove the directory when the child
 * exits: on every start.  Instead, the bundle is extracted once per build into
 * <root>/<id> (the root and the id, a SHA-256 of the extracted files, are
 * run-time options written into the archive at build time: never taken from
 * the environment), and Python runs in this process.
 *
 * Rules (docs/build.md, "Run in place"):
 * - every component of <root> is opened from / with O_NOFOLLOW and must be
 *   owned by root and not writable by group or others; <root> and <id> must be
 *   0700 or stricter; only <root> itself may be created;
 * - <id> is published complete: extracted into .tmp-<id>-<pid>, files fsync'd
 *   and made read-only, then renamed; a racing start that loses the rename
 *   removes its copy and uses the winner's;
 * - a shared flock on <id> is held for the life of the process, so pruning
 *   (cni-multi --prune-cache, cni-suite gc) never removes a cache in use;
 * - anything else (not root, read-only or noexec file system, a foreign
 *   owner, a symlink) falls back to the per-start temporary directory.
 */
#if defined(__linux__)

#ifndef _GNU_SOURCE
    #define _GNU_SOURCE /* nftw() flags, ST_NOEXEC */
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "pyi_global.h"
#include "pyi_main.h"
#include "pyi_archive.h"
#include "pyi_launch.h"
#include "pyi_cni_cache.h"

int pyi_cni_cache_populating = 0;

static const char *
_option(const struct ARCHIVE *archive, const char *name)
{
    const struct TOC_ENTRY *entry;
    size_t len = strlen(name);
    for (entry = archive->toc; entry < archive->toc_end; entry = pyi_archive_next_toc_entry(archive, entry)) {
        if (entry->typecode == ARCHIVE_ITEM_RUNTIME_OPTION && strncmp(entry->name, name, len) == 0 && entry->name[len] == ' ') {
            return entry->name + len + 1;
        }
    }
    return NULL;
}

/* A directory only root can change: owned by uid 0, no write bit for group
 * or others (a sticky world-writable /tmp fails); private: no bits at all. */
static int
_trusted(int fd, int private_dir)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0) {
        return 0;
    }
    return (st.st_mode & (private_dir ? 077 : 022)) == 0;
}

static int
_open_root(const char *root)
{
    char path[PYI_PATH_MAX];
    char *part, *next;
    int fd, sub;

    if (root[0] != '/' || snprintf(path, sizeof(path), "%s", root) >= (int)sizeof(path)) {
        return -1;
    }
    fd = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (fd < 0 || !_trusted(fd, 0)) {
        goto fail;
    }
    part = path + 1;
    while (part != NULL && *part != 0) {
        next = strchr(part, '/');
        if (next != NULL) {
            *next++ = 0;
            while (*next == '/') {
                next++;
            }
            if (*next == 0) {
                next = NULL;
            }
        }
        sub = openat(fd, part, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
        if (sub < 0 && errno == ENOENT && next == NULL) {
            if (mkdirat(fd, part, 0700) != 0 && errno != EEXIST) {
                goto fail;
            }
            sub = openat(fd, part, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
        }
        close(fd);
        fd = sub;
        if (fd < 0 || !_trusted(fd, next == NULL)) {
            goto fail;
        }
        part = next;
    }
    return fd;
fail:
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

static int
_valid_id(const char *id)
{
    size_t i, len = strlen(id);
    if (len != 64) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int
_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return (remove(path) == 0 || errno == ENOENT) ? 0 : -1;
}

/* Durable and read-only before it is published. */
static int
_seal_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    int fd, rc;
    mode_t mode;
    (void)ftw;
    if (flag == FTW_SL) {
        return 0;
    }
    if (flag != FTW_F && flag != FTW_DP) {
        return -1;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    mode = (flag == FTW_DP || (st->st_mode & S_IXUSR)) ? 0500 : 0400;
    rc = (fsync(fd) == 0 && fchmod(fd, mode) == 0) ? 0 : -1;
    close(fd);
    return rc;
}

static int
_populate(struct PYI_CONTEXT *pyi_ctx, int root_fd, const char *root, const char *id)
{
    char tmp_name[128];
    int rc, lost = 0;

    snprintf(tmp_name, sizeof(tmp_name), ".tmp-%s-%d", id, (int)getpid());
    if (snprintf(pyi_ctx->application_home_dir, PYI_PATH_MAX, "%s/%s", root, tmp_name) >= PYI_PATH_MAX) {
        return -1;
    }
    /* a leftover of a killed start that had our pid */
    nftw(pyi_ctx->application_home_dir, _remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdirat(root_fd, tmp_name, 0700) != 0) {
        return -1;
    }
    pyi_cni_cache_populating = 1;
    rc = pyi_launch_extract_files_from_archive(pyi_ctx);
    pyi_cni_cache_populating = 0;
    if (rc == 0) {
        rc = nftw(pyi_ctx->application_home_dir, _seal_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (rc == 0) {
        if (renameat(root_fd, tmp_name, root_fd, id) == 0) {
            fsync(root_fd);
            return 0;
        }
        /* another first start published it meanwhile: use the winner's copy */
        lost = errno == EEXIST || errno == ENOTEMPTY;
    }
    nftw(pyi_ctx->application_home_dir, _remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return lost ? 0 : -1;
}

/* The bundled libraries, by absolute path, so that libpython and the
 * extension modules find them by soname without LD_LIBRARY_PATH (which
 * would need a re-exec).  A soname already loaded (the bootloader's libz)
 * is not loaded twice. */
static void
_preload(int home_fd, const char *home)
{
    char path[PYI_PATH_MAX];
    struct dirent *entry;
    DIR *dir;
    int fd = dup(home_fd);

    if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    while ((entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, "lib", 3) != 0 || strstr(entry->d_name, ".so") == NULL ||
            strncmp(entry->d_name, "libpython", 9) == 0 || entry->d_type != DT_REG) {
            continue;
        }
        if (dlopen(entry->d_name, RTLD_NOW | RTLD_NOLOAD) != NULL) {
            continue;
        }
        if (snprintf(path, sizeof(path), "%s/%s", home, entry->d_name) < (int)sizeof(path)) {
            dlopen(path, RTLD_NOW | RTLD_GLOBAL);
        }
    }
    closedir(dir);
}

int
pyi_cni_cache_prepare(struct PYI_CONTEXT *pyi_ctx)
{
    const char *root = _option(pyi_ctx->archive, "pyi-cni-cache-root");
    const char *id = _option(pyi_ctx->archive, "pyi-cni-cache-id");
    struct statvfs vfs;
    struct stat st;
    int root_fd = -1, home_fd = -1, attempt;

    if (root == NULL || id == NULL || !_valid_id(id) || geteuid() != 0) {
        return -1;
    }
    root_fd = _open_root(root);
    if (root_fd < 0 || fstatvfs(root_fd, &vfs) != 0 || (vfs.f_flag & ST_NOEXEC)) {
        PYI_DEBUG("LOADER: cni cache: %s is not usable; per-start extraction\n", root);
        goto fallback;
    }
    /* a prune holds an exclusive lock while it removes a build's copy: after
     * waiting for it, the directory may be gone (no links), and is made again */
    for (attempt = 0; attempt < 3 && home_fd < 0; attempt++) {
        home_fd = openat(root_fd, id, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
        if (home_fd < 0 && errno == ENOENT && !(vfs.f_flag & ST_RDONLY)) {
            if (_populate(pyi_ctx, root_fd, root, id) == 0) {
                home_fd = openat(root_fd, id, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
            }
        }
        if (home_fd < 0 || !_trusted(home_fd, 1) || flock(home_fd, LOCK_SH) != 0) {
            goto fallback;
        }
        if (fstat(home_fd, &st) != 0 || st.st_nlink == 0) {
            close(home_fd);
            home_fd = -1;
        }
    }
    if (home_fd < 0) {
        goto fallback;
    }
    if (snprintf(pyi_ctx->application_home_dir, PYI_PATH_MAX, "%s/%s", root, id) >= PYI_PATH_MAX) {
        goto fallback;
    }
    close(root_fd);
    _preload(home_fd, pyi_ctx->application_home_dir);
    /* home_fd stays open: the shared lock lives as long as this process */
    return 0;

fallback:
    if (home_fd >= 0) {
        close(home_fd);
    }
    if (root_fd >= 0) {
        close(root_fd);
    }
    pyi_ctx->application_home_dir[0] = 0;
    return -1;
}

#endif /* defined(__linux__) */
