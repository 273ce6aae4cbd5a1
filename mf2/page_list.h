// An intrusive doubly linked list of pages (the partial list): O(1) push, pop and unlink of any
// page. Owner only.
#ifndef MF2_PAGE_LIST_H_
#define MF2_PAGE_LIST_H_

#include <cstddef>

#include "mf2/page.h"

namespace mf2 {

class PageList {
 public:
  Page* front() const { return head_; }
  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }

  void PushFront(Page* p) {
    p->prev = nullptr;
    p->next = head_;
    if (head_ != nullptr) head_->prev = p;
    head_ = p;
    ++size_;
  }

  void Remove(Page* p) {
    if (p->prev != nullptr) {
      p->prev->next = p->next;
    } else {
      head_ = p->next;
    }
    if (p->next != nullptr) p->next->prev = p->prev;
    p->prev = p->next = nullptr;
    --size_;
  }

  Page* PopFront() {
    Page* p = head_;
    if (p != nullptr) Remove(p);
    return p;
  }

 private:
  Page* head_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mf2

#endif  // MF2_PAGE_LIST_H_
