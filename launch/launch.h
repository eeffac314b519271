#pragma once
/// Umbrella header of retort_launch: the process world (ranks, devices, abort, stop
/// signals) and the communicators behind one interface.
///   retort::launch::World world;
///   auto comm = retort::launch::make_communicator(world, world.pick_device());
#include "launch/communicator.h"
#include "launch/mpi_communicator.h"
#include "launch/nccl_communicator.h"
#include "launch/world.h"
