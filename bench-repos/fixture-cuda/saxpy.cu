// GPU canary: y = a*x + y on the GPU, checked on the CPU. Prints "ok N" or fails.
#include <cstdio>
#include <cmath>

__global__ void saxpy(int n, float a, const float *x, float *y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

int main() {
  const int n = 1 << 20;
  float *x, *y;
  if (cudaMallocManaged(&x, n * sizeof(float)) != cudaSuccess ||
      cudaMallocManaged(&y, n * sizeof(float)) != cudaSuccess) {
    std::fprintf(stderr, "no CUDA device usable\n");
    return 2;
  }
  for (int i = 0; i < n; i++) { x[i] = 1.0f; y[i] = 2.0f; }
  saxpy<<<(n + 255) / 256, 256>>>(n, 2.0f, x, y);
  if (cudaDeviceSynchronize() != cudaSuccess) {
    std::fprintf(stderr, "kernel failed: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 3;
  }
  float max_error = 0.0f;
  for (int i = 0; i < n; i++) max_error = std::fmax(max_error, std::fabs(y[i] - 4.0f));
  cudaFree(x);
  cudaFree(y);
  if (max_error != 0.0f) {
    std::fprintf(stderr, "wrong result: max error %f\n", max_error);
    return 4;
  }
  std::printf("ok %d\n", n);
  return 0;
}
