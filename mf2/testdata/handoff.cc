// Threads hand std::string and std::vector objects to each other through a queue: every object
// is allocated by one thread and destroyed by another. Prints a checksum that must match the
// glibc run exactly. Used by preload_test.sh (MF2 as the process's malloc).
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct Message {
  std::string text;
  std::vector<uint64_t> numbers;
};

class Queue {
 public:
  void Push(std::unique_ptr<Message> m) {
    std::lock_guard<std::mutex> l(mu_);
    q_.push_back(std::move(m));
    cv_.notify_one();
  }
  std::unique_ptr<Message> Pop() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return !q_.empty(); });
    auto m = std::move(q_.front());
    q_.pop_front();
    return m;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Message>> q_;
};

int main() {
  constexpr int kStages = 4;
  constexpr int kMessages = 20000;
  std::vector<Queue> queues(kStages + 1);
  std::vector<std::thread> threads;
  // Stage i receives a message, consumes it (destroys it), and sends a new, larger one on.
  for (int stage = 0; stage < kStages; ++stage) {
    threads.emplace_back([&, stage] {
      for (int i = 0; i < kMessages; ++i) {
        std::unique_ptr<Message> in = queues[stage].Pop();
        auto out = std::make_unique<Message>();
        out->text = in->text + static_cast<char>('a' + stage);
        if (out->text.size() > 200) out->text.erase(0, 100);
        out->numbers = in->numbers;
        out->numbers.push_back(in->numbers.size() * 31 + stage);
        if (out->numbers.size() > 300) out->numbers.erase(out->numbers.begin(), out->numbers.begin() + 150);
        in.reset();  // freed by a thread that did not allocate it
        queues[stage + 1].Push(std::move(out));
      }
    });
  }
  std::thread producer([&] {
    for (int i = 0; i < kMessages; ++i) {
      auto m = std::make_unique<Message>();
      m->text = std::to_string(i);
      m->numbers.assign(i % 50, static_cast<uint64_t>(i));
      queues[0].Push(std::move(m));
    }
  });
  uint64_t checksum = 0;
  for (int i = 0; i < kMessages; ++i) {
    std::unique_ptr<Message> m = queues[kStages].Pop();
    for (char c : m->text) checksum = checksum * 131 + static_cast<unsigned char>(c);
    for (uint64_t n : m->numbers) checksum = checksum * 1000003 + n;
  }
  producer.join();
  for (auto& t : threads) t.join();
  std::printf("handoff checksum %llu\n", static_cast<unsigned long long>(checksum));
  return 0;
}
