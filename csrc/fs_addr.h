/* fs_addr.h - address text parsing, without the C library's generality. */
#ifndef FS_ADDR_H
#define FS_ADDR_H

#include <stddef.h>

/*
 * Parse the canonical dotted quad "a.b.c.d" (four decimal octets 0-255, no
 * leading zeros, nothing else) of length n into *out (network order).
 * Returns 1 on success, 0 for anything else: the caller then asks
 * inet_pton(3), so this only takes the common case faster and never accepts
 * what inet_pton would refuse.
 */
int fs_parse_ipv4(const char *s, size_t n, unsigned int *out);

#endif /* FS_ADDR_H */
