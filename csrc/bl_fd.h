/*
 * bl_fd.h: fd hygiene shared by every C helper.
 *
 * The UAPI reads fd 0 in several bpf_attr fields as "no fd", so bpfload
 * never hands out an fd in 0..2: a new fd that lands there is moved above
 * stdio (O_CLOEXEC kept) and the low one closed.
 */
#ifndef BPFLOAD_BL_FD_H
#define BPFLOAD_BL_FD_H

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* fd itself, or an O_CLOEXEC duplicate >= 3 when fd is 0..2; -errno on failure. */
static inline int bl_fd_above_stdio(int fd)
{
    if (fd >= 0 && fd <= 2) {
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int saved = errno;
        close(fd);
        if (nfd < 0)
            return -saved;
        return nfd;
    }
    return fd;
}

#endif /* BPFLOAD_BL_FD_H */
