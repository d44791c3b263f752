/* SPDX-License-Identifier: MIT */
/*
 * hist.h - latency histograms with power-of-two microsecond buckets (struct udsm_latency).
 *
 * Bucket 0 counts samples under 1 us, bucket i samples in [2^(i-1), 2^i) us, the last bucket
 * everything above. Recording is a count-leading-zeros and four relaxed stores: cheap enough
 * to sit on every fault.
 *
 * Locking: one writer per histogram (hist_add), or any number (hist_add_shared), and any number
 * of readers (hist_read) on other threads. Every field is a relaxed atomic, so a reader never
 * sees a torn value; it may see one sample counted in @count and not yet in its bucket (or the
 * reverse).
 *
 * This file is part of the pure core: no system calls.
 */
#ifndef UDSM_HIST_H
#define UDSM_HIST_H

#include <stdint.h>

#include "udsm.h"

/** hist_bucket() - the bucket of a sample of @ns nanoseconds. */
unsigned hist_bucket(uint64_t ns);
/** hist_bucket_lo_us() / hist_bucket_hi_us() - bounds of bucket @b in us; hi of the last
 *  bucket is UINT64_MAX (open). */
uint64_t hist_bucket_lo_us(unsigned b);
uint64_t hist_bucket_hi_us(unsigned b);

/** hist_add() - record one sample of @ns nanoseconds. Single writer per histogram. */
void hist_add(struct udsm_latency *h, uint64_t ns);
/** hist_add_shared() - the same, for a histogram that several threads record into at once. */
void hist_add_shared(struct udsm_latency *h, uint64_t ns);
/** hist_read() - a copy of @h, readable while its writer goes on. */
void hist_read(const struct udsm_latency *h, struct udsm_latency *out);
/** hist_sub() - @a - @b, bucket by bucket (a window's histogram from two snapshots; max_ns
 *  is @a's, the largest seen so far). */
void hist_sub(struct udsm_latency *r, const struct udsm_latency *a, const struct udsm_latency *b);
/**
 * hist_quantile_us() - the @q quantile (0..1) of @h in microseconds, interpolated linearly
 * inside its bucket (so within a factor of two of the truth), capped by max_ns. 0 if empty.
 */
double hist_quantile_us(const struct udsm_latency *h, double q);

#endif /* UDSM_HIST_H */
