// One model's sessions (Predictors, each with its own arena planned at start) and the bounded waiting room in
// front of them: at most `sessions` requests run and at most `queue` wait; past that a request is turned away
// before its body is read, so memory never grows with the number of clients.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "effcam/effcam.hpp"

namespace effcam::serve {

class SessionPool {
 public:
  using Clock = std::chrono::steady_clock;

  SessionPool(std::string name, const Model& model, uint32_t sessions, uint32_t queue,
              const PredictorOptions& options);
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // A place in the pool (running or waiting), taken before the body is read and given back on destruction.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept : pool_(other.pool_) { other.pool_ = nullptr; }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    Ticket& operator=(Ticket&&) = delete;
    ~Ticket();

   private:
    friend class SessionPool;
    explicit Ticket(SessionPool* pool) : pool_(pool) {}
    SessionPool* pool_;
  };

  // A session lent to one request; returned on destruction.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(other.pool_), index_(other.index_) { other.pool_ = nullptr; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Predictor& predictor() const;

   private:
    friend class SessionPool;
    Lease(SessionPool* pool, size_t index) : pool_(pool), index_(index) {}
    SessionPool* pool_;
    size_t index_;
  };

  // A ticket, or nothing when sessions + queue places are all taken (the caller answers 503).
  std::optional<Ticket> admit();
  // Waits for a free session until the deadline; nothing when it passed (the caller answers 503).
  std::optional<Lease> acquire(const Ticket& ticket, Clock::time_point deadline);

  const std::string& name() const { return name_; }
  const Model& model() const { return model_; }
  // The first predictor's figures (all are planned alike).
  const Predictor& planned() const { return predictors_.front(); }
  uint32_t sessions() const { return static_cast<uint32_t>(predictors_.size()); }
  uint32_t queue_limit() const { return queue_; }
  uint32_t busy() const;
  uint32_t waiting() const;  // admitted and not yet running
  bool full() const;

 private:
  std::string name_;
  Model model_;
  uint32_t queue_;
  std::vector<Predictor> predictors_;
  mutable std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<size_t> idle_;  // indices of predictors nobody holds
  uint32_t admitted_ = 0;     // tickets alive
};

}  // namespace effcam::serve
