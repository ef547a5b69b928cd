//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#ifndef PORTICO_MALLOC_COUNTER_H
#define PORTICO_MALLOC_COUNTER_H

/// Allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc) made by this process so far.
/// Only linked into the codec benchmark, whose allocator calls it counts by defining them (glibc only).
long portico_allocation_count(void);

#endif
