/* fs_addr.c - see fs_addr.h. */
#include "fs_addr.h"

#include <string.h>

int fs_parse_ipv4(const char *s, size_t n, unsigned int *out) {
    unsigned char octets[4];
    size_t i = 0;
    int part;
    for (part = 0; part < 4; part++) {
        unsigned int v = 0;
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
            v = v * 10 + (unsigned int)(s[i] - '0');
            i++;
        }
        if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
            return 0;
        octets[part] = (unsigned char)v;
        if (part < 3) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
    }
    if (i != n)
        return 0;
    memcpy(out, octets, sizeof(octets));    /* a.b.c.d in memory order */
    return 1;
}
