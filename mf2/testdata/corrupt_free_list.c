/* Hostile writes into free 48-byte blocks (issue 10, item 7), run with MF2 preloaded by
   //mf2:lifecycle_preload_test, with MF2_ON_ERROR=report.

     corrupt_free_list uaf-foreign    a freed block's first word is overwritten with the address
                                      of a static array (a use-after-free write)
     corrupt_free_list uaf-interior   ... with an address inside a live block (not a block start)
     corrupt_free_list uaf-live       ... with the address of a live block of the same page
     corrupt_free_list overflow       a live block overflows by one byte into the free block
                                      right after it

   Then malloc(48) runs 32 times. Whatever MF2 does with the damaged block, it must never hand
   out the planted address, never hand out a block that overlaps a live block or another block it
   handed out, and never modify a live block (each is filled with its own pattern and verified,
   as is the static array). Prints "bad=<pointer>" (the value now in the damaged link word) and
   ends with "intact"; exit 1 on any violation. Whether MF2 reports the damage depends on where
   the freed block sits: on its page's free list (MF2_CACHE_CLASS_KB=0) word 0 is the list's link
   and the corruption must be reported naming that pointer (the test script checks it); in a
   thread's cache word 0 is not a link and the write is harmless. Before the fix the link was
   followed blindly: malloc returned the planted address, or crashed inside the page's pop. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define kSize 48
#define kLive 200
#define kAfter 32

static unsigned char g_static[4 * kSize] __attribute__((aligned(64)));

static void Fill(void* p, int id) { memset(p, 0x40 + id % 64, kSize); }

static int Intact(const void* p, int id) {
  const unsigned char* c = p;
  for (int i = 0; i < kSize; ++i) {
    if (c[i] != (unsigned char)(0x40 + id % 64)) return 0;
  }
  return 1;
}

static int Overlaps(uintptr_t a, uintptr_t b) { return a < b + kSize && b < a + kSize; }

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  static char* live[kLive];
  static int alive[kLive];
  for (int i = 0; i < kLive; ++i) {
    live[i] = malloc(kSize);
    if (live[i] == NULL) return 2;
    Fill(live[i], i);
    alive[i] = 1;
  }
  memset(g_static, 0x33, sizeof(g_static));

  char* victim; /* the freed block that gets damaged */
  uintptr_t bad;
  if (strcmp(mode, "overflow") == 0) {
    /* Two blocks next to each other: free the second, write one byte past the first. */
    int i = 0;
    while (i + 1 < kLive && live[i + 1] != live[i] + kSize) ++i;
    if (i + 1 == kLive) {
      printf("setup: no two adjacent blocks\n");
      return 2;
    }
    victim = live[i + 1];
    alive[i + 1] = 0;
    free(victim);
    live[i][kSize] = 'A'; /* the overflow: the first byte of the free block */
    memcpy(&bad, victim, sizeof(bad));
  } else {
    victim = malloc(kSize);
    if (victim == NULL) return 2;
    char* neighbour = live[kLive - 1]; /* allocated just before the victim: same page */
    if (strcmp(mode, "uaf-foreign") == 0) {
      bad = (uintptr_t)g_static;
    } else if (strcmp(mode, "uaf-interior") == 0) {
      bad = (uintptr_t)(neighbour + 16);
    } else if (strcmp(mode, "uaf-live") == 0) {
      bad = (uintptr_t)neighbour;
    } else {
      return 2;
    }
    free(victim);
    memcpy(victim, &bad, sizeof(bad)); /* the use-after-free write, at offset 0 */
  }
  printf("bad=%p\n", (void*)bad);
  fflush(stdout);

  char* got[kAfter];
  for (int n = 0; n < kAfter; ++n) {
    char* q = malloc(kSize);
    if (q == NULL) {
      printf("FAIL: malloc returned NULL\n");
      return 1;
    }
    uintptr_t a = (uintptr_t)q;
    if (a == bad || Overlaps(a, (uintptr_t)g_static) ||
        Overlaps(a, (uintptr_t)g_static + 2 * kSize)) {
      printf("FAIL: malloc returned the planted address %p\n", (void*)q);
      return 1;
    }
    for (int i = 0; i < kLive; ++i) {
      if (alive[i] && Overlaps(a, (uintptr_t)live[i])) {
        printf("FAIL: malloc returned %p, overlapping live block %p\n", (void*)q, live[i]);
        return 1;
      }
    }
    for (int m = 0; m < n; ++m) {
      if (Overlaps(a, (uintptr_t)got[m])) {
        printf("FAIL: malloc returned %p twice\n", (void*)q);
        return 1;
      }
    }
    got[n] = q;
    memset(q, 0x7e, kSize);
  }
  for (int i = 0; i < kLive; ++i) {
    if (alive[i] && !Intact(live[i], i)) {
      printf("FAIL: live block %d at %p was modified\n", i, live[i]);
      return 1;
    }
  }
  for (size_t i = 0; i < sizeof(g_static); ++i) {
    if (g_static[i] != 0x33) {
      printf("FAIL: the static array was modified\n");
      return 1;
    }
  }
  for (int n = 0; n < kAfter; ++n) free(got[n]);
  for (int i = 0; i < kLive; ++i) {
    if (alive[i]) free(live[i]);
  }
  printf("%s: %d blocks handed out, none planted, none twice; live blocks intact\n", mode, kAfter);
  return 0;
}
