// A C++ program linked against MF2 through CMake's find_package(mf2). It proves that malloc,
// operator new and delete are MF2's: MF2 knows the blocks they return (mf2_usable_size agrees
// with malloc_usable_size), and its counters see pages taken and frees made by another thread.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <mf2/mf2.h>
#if __has_include(<mf2/mf2.hpp>)
#include <mf2/mf2.hpp>  // the C++ header compiles in a plain CMake C++17 project
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
  mf2_stats before;
  mf2_get_stats(&before);

  // operator new: MF2 knows the block, and malloc_usable_size is MF2's too.
  auto* numbers = new int[25];
  size_t usable = mf2_usable_size(numbers);
  Expect(usable >= 25 * sizeof(int), "mf2_usable_size(new int[25]) too small");
  Expect(malloc_usable_size(numbers) == usable, "malloc_usable_size is not MF2's");
  delete[] numbers;

  // Blocks allocated here and freed by another thread: MF2 counts remote frees.
  std::vector<std::vector<char>*> blocks;
  for (int i = 0; i < 2000; ++i) blocks.push_back(new std::vector<char>(200, 'x'));
  std::thread freer([&blocks] {
    for (auto* b : blocks) delete b;
  });
  freer.join();

  mf2_stats after;
  mf2_get_stats(&after);
  Expect(after.new_pages > before.new_pages, "new took no page from MF2");
  Expect(after.remote_frees > before.remote_frees, "another thread's deletes were not MF2 frees");

  std::printf("mf2 is malloc: usable_size(new int[25]) = %zu, new pages %llu -> %llu, "
              "remote frees %llu -> %llu\n",
              usable, static_cast<unsigned long long>(before.new_pages),
              static_cast<unsigned long long>(after.new_pages),
              static_cast<unsigned long long>(before.remote_frees),
              static_cast<unsigned long long>(after.remote_frees));
  if (failures != 0) return 1;
  std::printf("PASS\n");
  return 0;
}
