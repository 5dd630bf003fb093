#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  unsigned long long x = strtoull(argv[1], 0, 10) * 2654435761ULL + 88172645463325252ULL;
  long long n = atoll(argv[2]);
  int text = argv[3][0] == 't';
  static unsigned char buf[65536];
  while (n > 0) {
    int len = n < (long long) sizeof buf ? (int) n : (int) sizeof buf;
    for (int k = 0; k < len; k++) {
      x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
      unsigned char r = (unsigned char) ((x * 2685821657736338717ULL) >> 56);
      buf[k] = text ? (k % 64 == 63 ? '\n' : "acgt"[r & 3]) : r;
    }
    fwrite(buf, 1, len, stdout);
    n -= len;
  }
  return 0;
}
