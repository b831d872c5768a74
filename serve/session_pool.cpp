#include "serve/session_pool.h"

namespace effcam::serve {

SessionPool::SessionPool(std::string name, const Model& model, uint32_t sessions, uint32_t queue,
                         const PredictorOptions& options)
    : name_(std::move(name)), model_(model), queue_(queue) {
  predictors_.reserve(sessions);
  for (uint32_t i = 0; i < sessions; ++i) {
    predictors_.emplace_back(model_, options);
    idle_.push_back(i);
  }
}

SessionPool::Ticket::~Ticket() {
  if (pool_ == nullptr) return;
  std::lock_guard lock(pool_->mutex_);
  --pool_->admitted_;
}

SessionPool::Lease::~Lease() {
  if (pool_ == nullptr) return;
  {
    std::lock_guard lock(pool_->mutex_);
    pool_->idle_.push_back(index_);
  }
  pool_->freed_.notify_one();
}

Predictor& SessionPool::Lease::predictor() const { return pool_->predictors_[index_]; }

std::optional<SessionPool::Ticket> SessionPool::admit() {
  std::lock_guard lock(mutex_);
  if (admitted_ >= predictors_.size() + queue_) return std::nullopt;
  ++admitted_;
  return Ticket(this);
}

std::optional<SessionPool::Lease> SessionPool::acquire(const Ticket& /*ticket: proves admission*/,
                                                       Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  if (!freed_.wait_until(lock, deadline, [&] { return !idle_.empty(); })) return std::nullopt;
  const size_t index = idle_.back();
  idle_.pop_back();
  return Lease(this, index);
}

uint32_t SessionPool::busy() const {
  std::lock_guard lock(mutex_);
  return static_cast<uint32_t>(predictors_.size() - idle_.size());
}

uint32_t SessionPool::waiting() const {
  std::lock_guard lock(mutex_);
  const uint32_t running = static_cast<uint32_t>(predictors_.size() - idle_.size());
  return admitted_ > running ? admitted_ - running : 0;
}

bool SessionPool::full() const {
  std::lock_guard lock(mutex_);
  return admitted_ >= predictors_.size() + queue_;
}

}  // namespace effcam::serve
