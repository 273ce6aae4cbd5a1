// A C++ program linked against MF2 through CMake's find_package(mf2). It proves that malloc,
// operator new and delete are MF2's: mf2_usable_size accepts the blocks they return (on a block
// MF2 did not hand out it reports a foreign pointer and aborts), malloc_usable_size gives MF2's
// answer, and blocks allocated here and deleted by another thread go back to MF2.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <mf2/mf2.h>
#if __has_include(<mf2/mf2.hpp>)
#include <mf2/mf2.hpp>  // the C++ API, when the installed MF2 has it
#define HAVE_MF2_HPP 1
#endif

namespace {

int failures = 0;

void Expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  auto* numbers = new int[25];
  size_t usable = mf2_usable_size(numbers);
  Expect(usable >= 25 * sizeof(int), "mf2_usable_size(new int[25]) too small");
  Expect(malloc_usable_size(numbers) == usable, "malloc_usable_size is not MF2's");
#ifdef HAVE_MF2_HPP
  Expect(mf2::UsableSize(numbers) == usable, "mf2::UsableSize disagrees");
  void* cxx = mf2::Allocate(1000);  // the C++ API links against libmf2.so and libmf2.a
  Expect(cxx != nullptr && mf2::UsableSize(cxx) >= 1000, "mf2::Allocate");
  mf2::Free(cxx);
#endif
  delete[] numbers;

  // Blocks allocated here, checked as MF2's, and deleted by another thread (remote frees).
  std::vector<std::vector<char>*> blocks;
  for (int i = 0; i < 2000; ++i) {
    blocks.push_back(new std::vector<char>(200, 'x'));
    Expect(mf2_usable_size(blocks.back()->data()) >= 200, "vector storage is not MF2's");
  }
  std::thread freer([&blocks] {
    for (auto* b : blocks) delete b;
  });
  freer.join();
  void* again = std::malloc(200);  // the freed blocks are MF2's to hand out again
  Expect(mf2_usable_size(again) >= 200, "malloc after remote frees");
  std::free(again);

  std::printf("mf2 is malloc: usable_size(new int[25]) = %zu, 2000 blocks deleted by another "
              "thread\n", usable);
  if (failures != 0) return 1;
  std::printf("PASS\n");
  return 0;
}
