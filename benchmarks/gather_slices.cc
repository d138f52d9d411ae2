// A throw-away harness, kept so that the numbers BUILD_NOTES.md quotes for
// the block-size-1 gather's lane slices can be rerun: the forward's gather
// (out[o][:] = sum over stored weights p of column o of xt[idx[p]][:] * w[p])
// on feature-major float32 rows of BP lanes, AVX-512 vectors of 16 lanes,
// on one thread and on two (output rows split in halves), best of 30 calls
// of 20 repetitions each. Erdos-Renyi columns (seed 0), N x N, density D.
//
//   g++ -O3 -march=native -std=c++17 -pthread benchmarks/gather_slices.cc -o /tmp/g
//   /tmp/g 4096 256 0.01; /tmp/g 1000 128 0.045
//
// Variants: base (whole rows, no prefetch: the kernel below 8 MB); pfD
// (software prefetch D stored weights ahead); two (two output rows
// interleaved); sS (lanes in slices of S vectors read in place, rows BP
// floats apart: the kernel's sliced walk before 2026-12-07); sSpfD (the
// same with prefetch); mS / mSpfD (the slices copied first into one
// contiguous block each, slice-major: the kernel's walk since). The output
// of the run BUILD_NOTES.md quotes: benchmarks/cpu/gather_slices_20261207.txt.
#include <immintrin.h>
#include <cstdio>
#include <cstdint>
#include <vector>
#include <random>
#include <algorithm>
#include <chrono>
#include <thread>
typedef float vf __attribute__((vector_size(64)));
static inline vf ld(const float* p){ vf v; __builtin_memcpy(&v,p,64); return v;}
static inline void st(float* p, vf v){ __builtin_memcpy(p,&v,64);}
static inline vf splat(float x){ return vf{}+x; }
int N=1000, BP=128; double D=0.045;
std::vector<int> ptr, idx; std::vector<float> val, xt, yt;
template<int NV> void base(int o0,int o1){
  for(int o=o0;o<o1;++o){ vf a[NV]; for(int v=0;v<NV;++v)a[v]=vf{};
    for(int p=ptr[o];p<ptr[o+1];++p){ const float* s=&xt[(int64_t)idx[p]*BP]; vf w=splat(val[p]);
      for(int v=0;v<NV;++v) a[v]+=ld(s+16*v)*w; }
    for(int v=0;v<NV;++v) st(&yt[(int64_t)o*BP+16*v],a[v]); } }
template<int NV, int PD> void pf(int o0,int o1){
  int end=ptr[o1];
  for(int o=o0;o<o1;++o){ vf a[NV]; for(int v=0;v<NV;++v)a[v]=vf{};
    for(int p=ptr[o];p<ptr[o+1];++p){ if(p+PD<end){const float* q=&xt[(int64_t)idx[p+PD]*BP]; for(int l=0;l<NV;++l) _mm_prefetch((const char*)(q+16*l),_MM_HINT_T0);}
      const float* s=&xt[(int64_t)idx[p]*BP]; vf w=splat(val[p]);
      for(int v=0;v<NV;++v) a[v]+=ld(s+16*v)*w; }
    for(int v=0;v<NV;++v) st(&yt[(int64_t)o*BP+16*v],a[v]); } }
// two rows interleaved
template<int NV> void two(int o0,int o1){
  int o=o0;
  for(;o+1<o1;o+=2){ vf a[NV],b[NV]; for(int v=0;v<NV;++v)a[v]=b[v]=vf{};
    int p=ptr[o],pe=ptr[o+1],q=ptr[o+1],qe=ptr[o+2];
    while(p<pe && q<qe){ const float* s=&xt[(int64_t)idx[p]*BP]; vf w=splat(val[p]);
      const float* t=&xt[(int64_t)idx[q]*BP]; vf u=splat(val[q]);
      for(int v=0;v<NV;++v){ a[v]+=ld(s+16*v)*w; b[v]+=ld(t+16*v)*u;} ++p;++q;}
    for(;p<pe;++p){ const float* s=&xt[(int64_t)idx[p]*BP]; vf w=splat(val[p]); for(int v=0;v<NV;++v) a[v]+=ld(s+16*v)*w;}
    for(;q<qe;++q){ const float* t=&xt[(int64_t)idx[q]*BP]; vf u=splat(val[q]); for(int v=0;v<NV;++v) b[v]+=ld(t+16*v)*u;}
    for(int v=0;v<NV;++v){ st(&yt[(int64_t)o*BP+16*v],a[v]); st(&yt[(int64_t)(o+1)*BP+16*v],b[v]);} }
  if(o<o1) base<NV>(o,o1); }

// lane slices: SV vectors per slice, all outputs per slice
template<int SV, int PD> void sliced(int o0,int o1){
  for(int l0=0;l0<BP;l0+=16*SV){
  int end=ptr[o1];
  for(int o=o0;o<o1;++o){ vf a[SV]; for(int v=0;v<SV;++v)a[v]=vf{};
    for(int p=ptr[o];p<ptr[o+1];++p){ if(PD && p+PD<end){const float* q=&xt[(int64_t)idx[p+PD]*BP+l0]; for(int l=0;l<SV;l+=1) _mm_prefetch((const char*)(q+16*l),_MM_HINT_T0);}
      const float* s=&xt[(int64_t)idx[p]*BP+l0]; vf w=splat(val[p]);
      for(int v=0;v<SV;++v) a[v]+=ld(s+16*v)*w; }
    for(int v=0;v<SV;++v) st(&yt[(int64_t)o*BP+l0+16*v],a[v]); } } }

std::vector<float> xs;
template<int SV, int PD> void slicemajor(int o0,int o1){
  const int SL=16*SV;
  for(int l0=0;l0<BP;l0+=SL){
  const float* base_=&xs[(size_t)(l0/SL)*N*SL];
  int end=ptr[o1];
  for(int o=o0;o<o1;++o){ vf a[SV]; for(int v=0;v<SV;++v)a[v]=vf{};
    for(int p=ptr[o];p<ptr[o+1];++p){ if(PD && p+PD<end){const float* q=base_+(int64_t)idx[p+PD]*SL; for(int l=0;l<SV;l+=1) _mm_prefetch((const char*)(q+16*l),_MM_HINT_T0);}
      const float* s=base_+(int64_t)idx[p]*SL; vf w=splat(val[p]);
      for(int v=0;v<SV;++v) a[v]+=ld(s+16*v)*w; }
    for(int v=0;v<SV;++v) st(&yt[(int64_t)o*BP+l0+16*v],a[v]); } } }
template<int SV> void mkxs(){ const int SL=16*SV; xs.resize(xt.size()); for(int l0=0;l0<BP;l0+=SL) for(int i=0;i<N;++i) for(int l=0;l<SL;++l) xs[(size_t)(l0/SL)*N*SL+(size_t)i*SL+l]=xt[(size_t)i*BP+l0+l]; }
template<class F> double timeit(F f,int thr){
  double best=1e9;
  for(int r=0;r<30;++r){ auto t0=std::chrono::steady_clock::now();
    if(thr==1) for(int i=0;i<20;++i) f(0,N); else { std::thread th([&]{for(int i=0;i<20;++i)f(N/2,N);}); for(int i=0;i<20;++i)f(0,N/2); th.join(); }
    double t=std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count(); best=std::min(best,t/20);} return best; }
int main(int argc,char**argv){
  if(argc>1)N=atoi(argv[1]); if(argc>2)BP=atoi(argv[2]); if(argc>3)D=atof(argv[3]);
  std::mt19937 g(0); std::uniform_real_distribution<float> u(-1,1);
  ptr.push_back(0);
  for(int o=0;o<N;++o){ std::vector<int> r; for(int i=0;i<N;++i) if(std::generate_canonical<double,32>(g)<D) r.push_back(i);
    for(int i:r){idx.push_back(i); val.push_back(u(g));} ptr.push_back(idx.size()); }
  xt.resize((size_t)N*BP); for(auto&x:xt)x=u(g); yt.resize((size_t)N*BP);
  double nnz=idx.size(); printf("N %d BP %d nnz %d\n",N,BP,(int)nnz);
  for(int thr: {1,2}){
#define T(name, f) { double t=timeit([&](int a,int b){f(a,b);},thr); printf("thr %d %-10s %.3f ms %.2f ns/nnz\n",thr,name,t*1e3,t*1e9/nnz);} 
   if(BP==128){ T("base",base<8>); T("pf4",(pf<8,4>)); T("pf8",(pf<8,8>)); T("pf16",(pf<8,16>)); T("two",two<8>); mkxs<4>(); T("m4",(slicemajor<4,0>)); T("m4pf8",(slicemajor<4,8>)); }
   else { T("base",base<16>); T("pf4",(pf<16,4>)); T("pf8",(pf<16,8>)); T("two",two<16>); T("s8",(sliced<8,0>)); T("s4",(sliced<4,0>)); T("s2",(sliced<2,0>)); T("s8pf8",(sliced<8,8>)); T("s4pf8",(sliced<4,8>)); T("s4pf16",(sliced<4,16>)); T("s2pf16",(sliced<2,16>)); mkxs<8>(); T("m8",(slicemajor<8,0>)); T("m8pf8",(slicemajor<8,8>)); mkxs<4>(); T("m4",(slicemajor<4,0>)); T("m4pf8",(slicemajor<4,8>)); T("m4pf16",(slicemajor<4,16>));}
  }
}
