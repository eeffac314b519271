"""Independent reference for data::epoch_permutation (splitmix64 + Lemire + Fisher-Yates).

Prints the golden permutations that tests/data/test_sampler.cpp checks:
    python3 tests/data/golden_sampler.py
"""
M=(1<<64)-1
G=0x9e3779b97f4a7c15
def mix64(x):
    x&=M
    x=((x^(x>>30))*0xbf58476d1ce4e5b9)&M
    x=((x^(x>>27))*0x94d049bb133111eb)&M
    return x^(x>>31)
class SM:
    def __init__(s,st): s.st=st&M
    def next(s):
        s.st=(s.st+G)&M; return mix64(s.st)
    def below(s,r):
        m=s.next()*r; low=m&M
        if low<r:
            t=((1<<64)-r)%r
            while low<t:
                m=s.next()*r; low=m&M
        return m>>64
def perm(n,seed,epoch):
    p=list(range(n)); rng=SM(mix64(seed)^mix64((epoch+G)&M))
    for i in range(n-1,0,-1):
        j=rng.below(i+1); p[i],p[j]=p[j],p[i]
    return p
print(perm(10,0,0)); print(perm(7,12345,3)); print(perm(12,(1<<64)-1,1))
