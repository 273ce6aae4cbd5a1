// operator new's failure with MF2 as the process's malloc (//mf2:preload_test compares the output
// with glibc's): std::bad_alloc from every throwing form, the new-handler called until it gives
// up, and the nothrow forms returning null. MF2's shared library reaches the C++ runtime only
// through weak references (mf2/malloc_shim.cc), so this checks they are bound in a C++ program.
#include <cstddef>
#include <cstdio>
#include <new>

namespace {

constexpr size_t kAbsurd = size_t{1} << 60;
int g_handler_calls = 0;

void GiveUpOnThirdCall() {
  if (++g_handler_calls == 3) std::set_new_handler(nullptr);
}

template <typename F>
void ExpectBadAlloc(const char* what, F allocate) {
  try {
    void* volatile p = allocate();
    std::printf("%s: no exception (%p)\n", what, p);
  } catch (const std::bad_alloc& e) {
    std::printf("%s: std::bad_alloc (%s)\n", what, e.what());
  }
}

}  // namespace

int main() {
  ExpectBadAlloc("operator new", [] { return ::operator new(kAbsurd); });
  ExpectBadAlloc("operator new[]", [] { return ::operator new[](kAbsurd); });
  ExpectBadAlloc("aligned operator new",
                 [] { return ::operator new(kAbsurd, std::align_val_t{64}); });
  ExpectBadAlloc("new char[]", [] { return static_cast<void*>(new char[kAbsurd]); });
  std::set_new_handler(GiveUpOnThirdCall);
  ExpectBadAlloc("with a new-handler", [] { return ::operator new(kAbsurd); });
  std::printf("new-handler calls: %d\n", g_handler_calls);
  void* volatile q = ::operator new(kAbsurd, std::nothrow);
  std::printf("nothrow operator new: %s\n", q == nullptr ? "null" : "not null");
  // The process goes on allocating after the failures.
  int* volatile r = new int(7);
  std::printf("after: %d\n", *r);
  delete r;
  return 0;
}
