# Forward latency of cnn_large-shaped PyTorch CNNs at several channel counts (batch 256,
# 1 thread, median of 15): how much of a compacted model's speed is the channel count's
# shape rather than its size. Run with retort's malloc for a like-for-like figure:
#   env $(bench/malloc_env.sh) OMP_NUM_THREADS=1 /usr/bin/python3 bench/reference/channel_latency.py
import torch, time, torch.nn as nn
torch.set_num_threads(1)
def cnn(c):
    a,b,d,e,h=c
    return nn.Sequential(nn.Conv2d(1,a,3,padding=1,bias=False),nn.BatchNorm2d(a),nn.ReLU(),nn.Conv2d(a,b,3,padding=1,bias=False),nn.BatchNorm2d(b),nn.ReLU(),nn.MaxPool2d(2),
      nn.Conv2d(b,d,3,padding=1,bias=False),nn.BatchNorm2d(d),nn.ReLU(),nn.Conv2d(d,e,3,padding=1,bias=False),nn.BatchNorm2d(e),nn.ReLU(),nn.MaxPool2d(2),
      nn.Flatten(),nn.Linear(e*49,h),nn.ReLU(),nn.Linear(h,10)).eval()
x=torch.randn(256,1,28,28)
res={}
for c in [(32,32,64,64,512),(20,20,39,39,308),(24,24,40,40,312),(16,16,32,32,256),(24,24,48,48,320)]:
    m=cnn(c); ts=[]
    with torch.no_grad():
        for _ in range(5): m(x)
        for _ in range(15):
            t=time.perf_counter(); m(x); ts.append(time.perf_counter()-t)
    ts.sort(); res[c]=ts[len(ts)//2]*1e3
base=res[(32,32,64,64,512)]
for c,v in res.items(): print(c, f"{v:.1f} ms", f"{v/base:.2f}x")
